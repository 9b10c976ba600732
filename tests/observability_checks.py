"""What the deployed templates leave for people and automations to observe, read back from the
Prefect server of the end-to-end test: asset lineage events, per-deployment usage summaries,
and the validated pipeline's anomaly event for a planted volume drop."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

MATERIALIZED = "prefect.asset.materialization.succeeded"


def _events(api_url: str, name: str, prefix: str, timeout: float = 30.0) -> list[Any]:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    flt = EventFilter(
        event=EventNameFilter(name=[name]), resource=EventResourceFilter(id_prefix=[prefix])
    )
    deadline = time.monotonic() + timeout
    with SyncPrefectClient(api_url) as client:
        while True:
            events = client.read_events(filter=flt, limit=50).events
            if events or time.monotonic() > deadline:
                return events
            time.sleep(1)


def check_lineage(api_url: str, repo: Path) -> None:
    """corpus -> collection -> answers and plan summaries; input -> valid / quarantined files."""
    corpus = f"file://{(repo / 'deployments' / 'sample-corpus').resolve().as_posix()}"
    collections = [
        e
        for e in _events(api_url, MATERIALIZED, "qdrant://")
        if e.resource.id.endswith("/heronworks")
    ]
    assert collections, "rag-ingest materialized no qdrant://.../heronworks asset"
    latest = collections[0]
    assert latest.payload["points"] > 0 and latest.payload["embedder"]
    assert latest.payload["scope"] == "deployments/sample-corpus"
    assert (corpus, "asset") in {(r.id, r.role) for r in latest.related}
    collection_key = latest.resource.id

    for artifact in ("rag-answer", "plan-summary"):
        (answers, *_) = _events(api_url, MATERIALIZED, f"prefect://artifacts/{artifact}")
        assert (collection_key, "asset") in {(r.id, r.role) for r in answers.related}, artifact
    referenced = _events(api_url, "prefect.asset.referenced", collection_key)
    assert referenced, "nothing referenced the collection"

    outputs = {
        e.resource.id.rsplit("/", 1)[-1]: e for e in _events(api_url, MATERIALIZED, "file://")
    }
    assert outputs["orders.valid.csv"].payload["rows"] == 195
    assert outputs["orders.quarantined.csv"].payload["verdict"] == "quarantined"


def check_deployment_usage(api_url: str) -> None:
    """Each model template's run has its usage table; each deployment a sum over its runs."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    keys = [
        "flowkit-llm-usage-rag-answer-default",
        "flowkit-llm-usage-plan-and-execute-default",
    ]
    with SyncPrefectClient(api_url) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)), limit=50
        )
    latest = {a.key: a for a in sorted(found, key=lambda a: a.created or 0)}
    assert set(latest) == set(keys), f"deployment usage summaries: {sorted(latest)}"
    for artifact in latest.values():
        text = str(artifact.data)
        assert "| **total** |" in text and "tokens" in text
        total = text.split("| **total** |")[1].split("|")
        assert int(total[2].strip(" *")) > 0, text  # tokens


def check_planted_volume_drop(api_url: str, repo: Path, env: dict, prefect: str) -> None:
    """The sample data's first 40 rows as the dataset 'orders': the run fails with an anomaly."""
    params = json.dumps(
        {
            "input_path": "deployments/sample-data/orders-drop.csv",
            "dataset": "orders",
            "output_dir": str(Path(env["FLOWKIT_DATA_DIR"]) / "dropped"),
            "schema_snapshot": "",
        }
    )
    subprocess.run(
        [prefect, "deployment", "run", "validated-pipeline/default", "--params", params, "--watch"],
        cwd=repo,
        env=env,
        capture_output=True,
        timeout=180,
        check=False,  # fails by design
    )
    (anomaly, *_) = _events(api_url, "flowkit.validation.anomaly", "flowkit.checkpoint.orders")
    assert anomaly.payload["monitors"] == ["volume"] and anomaly.payload["rows"] == 40
    assert not (Path(env["FLOWKIT_DATA_DIR"]) / "dropped").exists()

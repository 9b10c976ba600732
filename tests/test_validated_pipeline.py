"""The validated-pipeline template for real: the shipped demo data and suite, real GX, Prefect."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from prefect import get_client
from prefect.artifacts import Artifact

from flowkit_prefect.exceptions import DataReadError, SchemaDriftError, ValidationFailedError
from flowkit_prefect.flows.validated_pipeline import validated_pipeline

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "deployments" / "sample-data" / "orders.csv"
SUITE = REPO / "deployments" / "suites" / "orders.json"
DROP = REPO / "deployments" / "sample-data" / "orders-drop.csv"


def test_demo_data_is_split_and_nothing_is_lost(harness: str, tmp_path: Path) -> None:
    report = validated_pipeline(
        input_path=str(DATA),
        suite=str(SUITE),
        output_dir=str(tmp_path / "out"),
        schema_snapshot=str(tmp_path / "orders.schema.json"),
    )
    assert (report.input_rows, report.valid_rows, report.quarantined_rows) == (200, 195, 5)
    assert (report.errors, report.warnings) == (3, 1)  # amount, currency, order_id; email warns
    valid = pd.read_csv(report.valid_path)
    quarantined = pd.read_csv(report.quarantined_path)
    assert len(valid) + len(quarantined) == 200
    assert not set(valid["customer_email"]) & set(quarantined["customer_email"])
    reasons = dict(zip(quarantined["customer_email"], quarantined["_flowkit_failed"], strict=True))
    assert "amount" in reasons["customer12@heronworks.example"]
    assert "currency" in reasons["customer48@heronworks.example"]
    assert "order_id" in reasons["customer89@heronworks.example"]
    assert "not-an-email" in set(valid["customer_email"])  # a warning keeps the row
    assert (tmp_path / "orders.schema.json").exists()
    summary = Artifact.get("validated-pipeline-report")
    assert summary is not None and "195" in str(summary.data)


def test_fail_policy_stops_the_run_and_writes_nothing(harness: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationFailedError, match="amount"):
        validated_pipeline(
            input_path=str(DATA),
            suite=str(SUITE),
            output_dir=str(tmp_path / "out"),
            policy="fail",
            schema_snapshot=None,
        )
    assert not (tmp_path / "out").exists()


def test_bad_input_says_what_to_fix_and_writes_nothing(harness: str, tmp_path: Path) -> None:
    with pytest.raises(DataReadError):
        validated_pipeline(
            input_path=str(tmp_path / "missing.csv"),
            suite=str(SUITE),
            output_dir=str(tmp_path / "out"),
            schema_snapshot=None,
        )
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataReadError):
        validated_pipeline(
            input_path=str(empty),
            suite=str(SUITE),
            output_dir=str(tmp_path / "out"),
            schema_snapshot=None,
        )
    assert not (tmp_path / "out").exists()


def test_schema_drift_is_reported_and_can_stop_the_run(harness: str, tmp_path: Path) -> None:
    snapshot = tmp_path / "orders.schema.json"
    out = tmp_path / "out"
    common = {"suite": str(SUITE), "output_dir": str(out), "schema_snapshot": str(snapshot)}
    validated_pipeline(input_path=str(DATA), **common)  # records the snapshot
    drifted = tmp_path / "orders.csv"
    frame = pd.read_csv(DATA).drop(columns=["status"]).assign(channel="web")
    frame.to_csv(drifted, index=False)
    warned = validated_pipeline(input_path=str(drifted), **common)
    assert warned.input_rows == 200
    with pytest.raises(SchemaDriftError, match="status"):
        validated_pipeline(input_path=str(drifted), drift_policy="fail", **common)


def test_a_planted_volume_drop_on_the_second_run_raises_an_anomaly(
    harness: str, tmp_path: Path
) -> None:
    """The shipped suite's volume monitor: the demo data, then its first 40 rows as the same
    dataset (deployments/sample-data/orders-drop.csv): the run fails before writing anything."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    from flowkit_prefect.exceptions import DataAnomalyError

    dataset = f"orders-{uuid.uuid4().hex[:8]}"
    common = {"suite": str(SUITE), "schema_snapshot": None, "dataset": dataset}
    first = validated_pipeline(input_path=str(DATA), output_dir=str(tmp_path / "1"), **common)
    assert first.valid_rows == 195
    with pytest.raises(DataAnomalyError, match=r"volume: 40 rows against a median of 200"):
        validated_pipeline(input_path=str(DROP), output_dir=str(tmp_path / "2"), **common)
    assert not (tmp_path / "2").exists()

    flt = EventFilter(
        event=EventNameFilter(name=["flowkit.validation.anomaly"]),
        resource=EventResourceFilter(id=[f"flowkit.checkpoint.{dataset}"]),
    )
    deadline = time.monotonic() + 20
    with get_client(sync_client=True) as client:
        while not (events := client.read_events(filter=flt, limit=5).events):
            assert time.monotonic() < deadline, "no flowkit.validation.anomaly event"
            time.sleep(0.5)
    assert events[0].payload["monitors"] == ["volume"] and events[0].payload["rows"] == 40
    trend = Artifact.get(f"validation-{dataset}-trend")
    assert trend is not None and "ANOMALY volume" in str(trend.data)


def test_the_outputs_are_assets_made_from_the_input(harness: str, tmp_path: Path) -> None:
    from tests.helpers import wait_for_events

    out = tmp_path / "out with space"  # not allowed in asset keys: made safe, not an error
    report = validated_pipeline(
        input_path=str(DATA), suite=str(SUITE), output_dir=str(out), schema_snapshot=None
    )
    valid_key = "file://" + Path(report.valid_path).resolve().as_posix().replace(" ", "-")
    (event,) = wait_for_events("prefect.asset.materialization.succeeded", valid_key)
    assert event.payload == {
        "checkpoint": "orders",
        "verdict": "quarantined",
        "input_rows": 200,
        "rows": 195,
    }
    assert (f"file://{DATA.resolve().as_posix()}", "asset") in {
        (r.id, r.role) for r in event.related
    }
    quarantined_key = valid_key.replace("orders.valid.csv", "orders.quarantined.csv")
    (held,) = wait_for_events("prefect.asset.materialization.succeeded", quarantined_key)
    assert held.payload["rows"] == 5


def test_every_asset_key_the_templates_build_is_one_prefect_accepts(tmp_path: Path) -> None:
    from prefect.assets import Asset

    from flowkit_prefect import QdrantStore
    from flowkit_prefect.flows._lineage import (
        artifact_asset,
        collection_asset,
        corpus_asset,
        file_asset,
    )

    odd = tmp_path / "a b#c%d"
    built = [
        artifact_asset("rag-answer", "answers"),
        artifact_asset("plan-summary", "plans"),
        collection_asset(QdrantStore(location=str(odd)), "docs"),
        collection_asset(QdrantStore(location="http://127.0.0.1:6333/"), "docs"),
        collection_asset(QdrantStore(location=":memory:"), "docs"),
        corpus_asset(str(odd), "x"),
        corpus_asset(None, "my records"),
        file_asset(odd / "out.csv"),
    ]
    for asset in built:
        assert Asset(key=asset.key).key == asset.key  # Prefect's own key validation
    assert built[0].key == "prefect://artifacts/rag-answer"
    assert built[3].key == "qdrant://127.0.0.1:6333/docs"
    assert built[4].key == "qdrant://memory/docs"
    assert built[6].key == "flowkit://records/my-records"

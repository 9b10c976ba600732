"""End to end, as a user runs it: a Prefect server and a process worker in their own processes,
the repository's prefect.yaml deployed, and the templates started with `prefect deployment run`.
Runs the real offline model (SmolLM2 via llama.cpp) and the real offline embedder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from flowkit_prefect import _stack
from tests.helpers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.local_model]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POOL = "flowkit-process"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("stack")
    local = _stack.Stack(root, free_port())
    env = {
        **os.environ,
        **local.env(),
        "FLOWKIT_PROJECT_DIR": str(REPO),
        "FLOWKIT_DATA_DIR": str(root / "data"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
    }
    saved = dict(os.environ)
    os.environ.update(env)  # the worker inherits it through _stack's spawn
    try:
        print(_stack.start_server(local))
        yield {"stack": local, "env": env, "root": root}
    finally:
        print(_stack.stop_worker(local))
        print(_stack.stop_server(local))
        os.environ.clear()
        os.environ.update(saved)


def _run(args: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _preset(name: str) -> dict:
    return json.loads((REPO / "deployments" / "presets" / name).read_text())


def test_deploy_and_run_the_templates(stack: dict) -> None:
    env, local = stack["env"], stack["stack"]
    prefect, flowkit = str(BIN / "prefect"), str(BIN / "flowkit")
    _run([prefect, "--no-prompt", "block", "register", "-m", "flowkit_prefect.blocks"], env)
    saved = _run([flowkit, "blocks", "save", "blocks"], env).stdout
    assert "flowkit-qdrant-store/default" in saved
    _run([prefect, "--no-prompt", "work-pool", "create", POOL, "--type", "process"], env)
    deployed = _run(  # the process deployments, not the docker ones
        [prefect, "--no-prompt", "deploy", "--name", "default", "--name", "dask"], env
    )
    assert "rag-ingest/default" in deployed.stdout and "rag-answer/default" in deployed.stdout
    print(_stack.start_worker(local, POOL, local.api_url))

    # Two ingests at once against the one embedded store: they must queue, not crash.
    ingest = json.dumps(_preset("sample-ingest.json"))
    first = subprocess.Popen(
        [prefect, "deployment", "run", "rag-ingest/default", "--params", ingest, "--watch"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    second = _run(
        [prefect, "deployment", "run", "rag-ingest/default", "--params", ingest, "--watch"], env
    )
    first_out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, first_out[-3000:]
    assert "Completed" in first_out and "Completed" in second.stdout

    # The same ingest with its embedding batches on a local Dask cluster (rag-ingest/dask).
    on_dask = json.dumps(_preset("sample-ingest.json") | {"collection": "heronworks-dask"})
    dask_out = _run(
        [prefect, "deployment", "run", "rag-ingest/dask", "--params", on_dask, "--watch"], env
    ).stdout
    assert "Completed" in dask_out
    dask_points = _count_points(stack["root"], "heronworks-dask")
    assert dask_points == _count_points(stack["root"], "heronworks") > 0

    question = json.dumps(_preset("sample-question.json"))
    _run([prefect, "deployment", "run", "rag-answer/default", "--params", question, "--watch"], env)
    shown = _run([flowkit, "show-answer"], env).stdout
    assert local.ui_url + "/runs/flow-run/" in shown

    plan = json.dumps(_preset("sample-plan.json"))
    _run(
        [prefect, "deployment", "run", "plan-and-execute/default", "--params", plan, "--watch"], env
    )

    code = json.dumps(_preset("sample-code.json"))
    _run(
        [prefect, "deployment", "run", "code-generation/default", "--params", code, "--watch"], env
    )

    out = stack["root"] / "validated"
    data = json.dumps({"output_dir": str(out), "schema_snapshot": str(out / "schema.json")})
    _run([prefect, "deployment", "run", "validated-pipeline/default", "--params", data], env)
    failing = json.dumps({"output_dir": str(out / "strict"), "policy": "fail"})
    subprocess.run(  # this run fails by design: its checkpoint event starts the alert
        [prefect, "deployment", "run", "validated-pipeline/default", "--params", failing],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=120,
        check=True,
    )
    # both checkpoints failed expectations (the first quarantined its rows): two alerts
    _wait_for_runs(local.api_url, {"validated-pipeline": 2, "validation-alert": 2})
    assert (out / "orders.quarantined.csv").exists() and not (out / "strict").exists()

    _check_runs_and_artifacts(local.api_url, stack["root"])
    _check_the_answer_cites_the_fact(shown, stack["root"])


def _count_points(root: Path, collection: str) -> int:
    """Points in a collection of the embedded store the deployments wrote (no run holds it now)."""
    client = QdrantClient(path=str(root / "data" / "qdrant"))
    try:
        return client.count(collection, exact=True).count
    finally:
        client.close()


def _wait_for_runs(api_url: str, expected: dict[str, int], timeout: float = 240) -> None:
    """Until each named flow has that many finished runs (the alert comes from an automation)."""
    from prefect.client.orchestration import SyncPrefectClient

    deadline = time.monotonic() + timeout
    with SyncPrefectClient(api_url) as client:
        while True:
            names = {f.id: f.name for f in client.read_flows()}
            done: dict[str, int] = {}
            for run in client.read_flow_runs():
                if run.state and run.state.is_final():
                    done[names[run.flow_id]] = done.get(names[run.flow_id], 0) + 1
            if all(done.get(name, 0) >= count for name, count in expected.items()):
                return
            assert time.monotonic() < deadline, f"runs not finished in time: {done}"
            time.sleep(2)


def _check_runs_and_artifacts(api_url: str, root: Path) -> None:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with SyncPrefectClient(api_url) as client:
        runs = client.read_flow_runs()
        by_flow: dict[str, list[str]] = {}
        names = {f.id: f.name for f in client.read_flows()}
        for run in runs:
            by_flow.setdefault(names[run.flow_id], []).append(run.state_name)
        by_flow = {name: sorted(states) for name, states in by_flow.items()}
        assert by_flow == {
            "rag-ingest": ["Completed", "Completed", "Completed"],  # two queued + one on Dask
            "rag-answer": ["Completed"],
            "plan-and-execute": ["Completed"],
            "code-generation": ["Completed"],
            "validated-pipeline": ["Completed", "Failed"],
            "validation-alert": ["Completed", "Completed"],
        }
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(
                    any_=[
                        "rag-ingest-summary",
                        "rag-ingest-progress",
                        "rag-answer",
                        "plan-status",
                        "codegen-test-report",
                        "codegen-result",
                    ]
                )
            ),
            limit=200,
        )
        kinds = {(a.key, a.type) for a in artifacts}
        assert ("rag-ingest-summary", "table") in kinds
        assert ("rag-ingest-progress", "progress") in kinds
        assert ("rag-answer", "markdown") in kinds
        assert ("plan-status", "table") in kinds
        assert ("codegen-result", "markdown") in kinds
        report = max(
            (a for a in artifacts if a.key == "codegen-test-report"), key=lambda a: a.created
        )
        report_rows = json.loads(report.data) if isinstance(report.data, str) else report.data
        assert [row["test"] for row in report_rows] == ["public-1", "public-2", "public-3"]
        plan_table = max((a for a in artifacts if a.key == "plan-status"), key=lambda a: a.created)
        plan_rows = (
            json.loads(plan_table.data) if isinstance(plan_table.data, str) else plan_table.data
        )
        assert plan_rows and all(
            row["status"] in {"completed", "failed", "blocked"} for row in plan_rows
        )
        table = next(a for a in artifacts if a.key == "rag-ingest-summary")
        rows = json.loads(table.data) if isinstance(table.data, str) else table.data
        statuses = {row["source"]: row["status"] for row in rows}
        # one of the two concurrent runs ingested, the other then found everything unchanged
        assert statuses["handbook/refunds.md"] in {"ingested", "unchanged"}
        assert statuses["drafts/empty-note.txt"] == "skipped"


def _check_the_answer_cites_the_fact(shown: str, root: Path) -> None:
    assert "45 days" in shown.split("### Answer")[1].split("###")[0]
    chunk_ids = re.findall(r"\(chunk `([0-9a-f-]{36})`\)", shown)
    assert chunk_ids, shown
    client = QdrantClient(path=str(root / "data" / "qdrant"))  # the runs released the store
    try:
        cited = client.retrieve("heronworks", ids=chunk_ids, with_payload=True)
    finally:
        client.close()
    assert any("45 days" in point.payload["text"] for point in cited)
    assert all(point.payload["source"] == "handbook/refunds.md" for point in cited[:1])


def _crash_corpus(folder: Path, documents: int = 400) -> None:
    """Distinct documents of ~5 chunks each (the default 800-character chunks)."""
    words = [
        "heron",
        "river",
        "refund",
        "station",
        "sensor",
        "battery",
        "firmware",
        "warranty",
        "shipment",
        "invoice",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(documents):
        paragraphs = [
            f"Document {number}, part {part}: "
            + " ".join(words[(number * 7 + part * 3 + i) % len(words)] for i in range(120))
            for part in range(3)
        ]
        (folder / f"doc-{number:04d}.md").write_text("\n\n".join(paragraphs) + "\n")


def _flow_run_id(output: str) -> str:
    match = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert match, output[-2000:]
    return match.group(1)


def _progress(client, flow_run_id: str) -> float:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    )
    values = [float(a.data) for a in artifacts if a.type == "progress" and a.data is not None]
    return max(values, default=0.0)


def _run_logs(client, flow_run_id: str) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs = client.read_logs(
        log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200
    )
    return [log.message for log in logs]


def _point_ids(root: Path, collection: str) -> list[str]:
    client = QdrantClient(path=str(root / "data" / "qdrant"))
    try:
        ids, offset = [], None
        while True:
            points, offset = client.scroll(collection, limit=1000, offset=offset)
            ids += [str(p.id) for p in points]
            if offset is None:
                return ids
    finally:
        client.close()


def test_a_killed_ingest_resumes_without_a_stall(stack: dict) -> None:
    """SIGKILL the rag-ingest flow-run process at ~40 %, run it again: the re-run gets the store
    once the crashed run's 60 s lease lapses, ends with exactly the expected chunks, and does not embed the stored ones again.
    Runs after test_deploy_and_run_the_templates (same stack: server, worker, deployments)."""
    from prefect.client.orchestration import SyncPrefectClient

    from flowkit_prefect.retrieval.chunking import ChunkingOptions, split_documents
    from flowkit_prefect.retrieval.loaders import load_folder

    env, local, root = stack["env"], stack["stack"], stack["root"]
    prefect = str(BIN / "prefect")
    corpus = root / "crash-corpus"
    _crash_corpus(corpus)
    params = json.dumps(
        {"folder": str(corpus), "collection": "crash", "batch_size": 16, "scope": "crash"}
    )
    started = _run([prefect, "deployment", "run", "rag-ingest/default", "--params", params], env)
    run_id = _flow_run_id(started.stdout)
    with SyncPrefectClient(local.api_url) as client:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and _progress(client, run_id) < 40.0:
            assert not client.read_flow_run(run_id).state.is_final(), "finished before the kill"
            time.sleep(0.5)
        flow_run = client.read_flow_run(run_id)
        assert flow_run.infrastructure_pid, "the worker recorded no process for the run"
        pid = int(str(flow_run.infrastructure_pid).rsplit(":", 1)[-1])
        at = _progress(client, run_id)
        os.kill(pid, 9)  # the flow-run process the worker started, by its PID
        killed = time.monotonic()
        while time.monotonic() - killed < 30 and _stack._alive(pid):
            time.sleep(0.2)
    stored_before = len(_point_ids(root, "crash"))
    expected = {
        c.chunk_id
        for c in split_documents(load_folder(corpus).documents, ChunkingOptions(), "crash")
    }
    assert 0 < stored_before < len(expected), (stored_before, len(expected))

    rerun = _run(
        [prefect, "deployment", "run", "rag-ingest/default", "--params", params, "--watch"], env
    )
    assert "Completed" in rerun.stdout, rerun.stdout[-3000:]
    with SyncPrefectClient(local.api_url) as client:
        logs = _run_logs(client, _flow_run_id(rerun.stdout))
    waited = [
        float(m)
        for m in re.findall(r"Got the embedded Qdrant store .* after (\d+) s", "\n".join(logs))
    ]
    waiting = [m for m in logs if "Waiting for the embedded Qdrant store" in m]
    written = [int(m) for m in re.findall(r"(\d+) chunks written", "\n".join(logs))]
    ids = _point_ids(root, "crash")
    print(
        f"\nkilled at {at:.0f} % with {stored_before} of {len(expected)} chunks stored; the "
        f"re-run waited {waited[0] if waited else 0:.0f} s for the store ({len(waiting)} waiting "
        f"lines) and wrote {written[0] if written else '?'} chunks"
    )
    assert (waited[0] if waited else 0.0) <= 90.0  # the store's 60 s lease + the repossessor
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert written and written[0] <= len(expected) - stored_before + 16 * 5  # batches in flight
    assert written[0] >= len(expected) - stored_before

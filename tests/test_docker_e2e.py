"""End to end on the Docker work pool, from nothing: a Docker engine of our own (docker.io from
apt when missing), the debootstrap base image, the flowkit image built by prefect.yaml's build
step from a host-built wheelhouse, the `flowkit-docker` pool, the docker deployments and a Docker
worker; then rag-ingest/docker, rag-answer/docker and validated-pipeline/docker run in containers.

Slow things are cached under ~/.cache/flowkit-prefect/docker (FLOWKIT_TEST_DOCKER_CACHE): the
base root filesystem, the wheelhouse and the engine's image store, so a second run is fast.
Everything else (server, socket, worker, data folder) lives in this test's temp folder.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkit_prefect import QdrantStore, _docker_stack, _stack
from tests.helpers import free_port

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.local_model]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CACHE = Path(
    os.environ.get(
        "FLOWKIT_TEST_DOCKER_CACHE", Path.home() / ".cache" / "flowkit-prefect" / "docker"
    )
)


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    try:
        print(_docker_stack.ensure_engine_installed())
    except _docker_stack.EngineUnavailableError as exc:
        pytest.skip(f"no Docker engine here and none could be installed: {exc}")
    root = tmp_path_factory.mktemp("docker-stack")
    local = _stack.Stack(root, free_port())
    docker = _docker_stack.DockerStack(root / "docker", CACHE, data_root=CACHE / "engine")
    env = {
        **os.environ,
        **local.env(),
        **docker.env(),
        "FLOWKIT_PROJECT_DIR": str(REPO),
        # the process deployment's default store is the folder the containers see as /data/qdrant
        "FLOWKIT_DATA_DIR": str(docker.data_dir),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
    }
    saved = dict(os.environ)
    os.environ.update(env)  # the workers inherit it
    try:
        print(_stack.start_server(local))
        yield {"stack": local, "docker": docker, "env": env, "root": root}
    finally:
        print(_stack.stop_worker(local))
        for line in _docker_stack.down(docker):  # worker, its containers, dockerd: by PID
            print(line)
        print(_stack.stop_server(local))
        os.environ.clear()
        os.environ.update(saved)


def _run(args: list[str], env: dict, timeout: float = 600) -> str:
    done = subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def _deployment_run(name: str, params: dict, env: dict) -> tuple[str, float]:
    started = time.monotonic()
    out = _run(
        [
            str(BIN / "prefect"),
            "deployment",
            "run",
            name,
            "--params",
            json.dumps(params),
            "--watch",
        ],
        env,
    )
    return out, time.monotonic() - started


def _preset(name: str) -> dict:
    return json.loads((REPO / "deployments" / "presets" / name).read_text())


def test_docker_work_pool_end_to_end(stacks: dict) -> None:
    env, local, docker = stacks["env"], stacks["stack"], stacks["docker"]
    started = time.monotonic()
    _docker_stack.up(docker, local, local.api_url, REPO)
    setup = time.monotonic() - started
    print(f"Docker stack set up in {setup:.0f} s")

    out, _ = _deployment_run("rag-ingest/docker", _preset("sample-ingest.json"), env)
    assert "Completed" in out, out[-3000:]
    question = _preset("sample-question.json")
    out, docker_latency = _deployment_run("rag-answer/docker", question, env)
    assert "Completed" in out, out[-3000:]
    shown = _run([str(BIN / "flowkit"), "show-answer"], env)
    _check_the_answer_cites_the_fact(shown, docker.data_dir / "qdrant")

    out, _ = _deployment_run("validated-pipeline/docker", {}, env)
    assert "Completed" in out, out[-3000:]
    with open(docker.data_dir / "validated" / "orders.quarantined.csv", newline="") as rows:
        assert len(list(csv.DictReader(rows))) == 5

    # The same question on the process work pool, against the same store folder (on the host).
    prefect = str(BIN / "prefect")
    _run(
        [prefect, "--no-prompt", "work-pool", "create", "flowkit-process", "--type", "process"], env
    )
    _run([prefect, "--no-prompt", "deploy", "--name", "rag-answer/default"], env)
    print(_stack.start_worker(local, "flowkit-process", local.api_url))
    out, process_latency = _deployment_run("rag-answer/default", question, env)
    assert "Completed" in out, out[-3000:]
    print(
        f"rag-answer latency (deployment run --watch): Docker {docker_latency:.1f} s, "
        f"process {process_latency:.1f} s"
    )
    _check_states(local.api_url)


def _check_the_answer_cites_the_fact(shown: str, qdrant_dir: Path) -> None:
    assert "45 days" in shown.split("### Answer")[1].split("###")[0], shown
    chunk_ids = re.findall(r"\(chunk `([0-9a-f-]{36})`\)", shown)
    assert chunk_ids, shown
    client = QdrantStore(location=str(qdrant_dir)).get_client()  # the container's run released it
    try:
        cited = client.retrieve("heronworks", ids=chunk_ids, with_payload=True)
    finally:
        client.close()
    fact = [point for point in cited if "45 days" in point.payload["text"]]
    assert fact, cited
    assert all(point.payload["source"] == "handbook/refunds.md" for point in fact)


def _check_states(api_url: str) -> None:
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(api_url) as client:
        names = {f.id: f.name for f in client.read_flows()}
        deployments = {d.id: d.name for d in client.read_deployments()}
        runs = sorted(
            (names[r.flow_id], deployments.get(r.deployment_id), r.state_name)
            for r in client.read_flow_runs()
        )
    assert runs == [
        ("rag-answer", "default", "Completed"),
        ("rag-answer", "docker", "Completed"),
        ("rag-ingest", "docker", "Completed"),
        ("validated-pipeline", "docker", "Completed"),
    ]

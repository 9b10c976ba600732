"""A burst of deployment runs against a real local stack: the machinery of
``tests/test_postgres_load.py`` and ``benchmarks/bench_load.py``.

A Prefect server (SQLite, or PostgreSQL through ``flowkit_prefect._postgres``), the repository's
prefect.yaml deployed to a process work pool, process workers, then ``runs`` deployment runs
created at once: ``validated-pipeline`` on a small clean dataset (each into its own folder),
``rag-ingest`` of inline records (each into its own collection) and ``rag-answer`` with
``min_score=1.0`` (nothing is close enough, so no model is called). No run needs a chat model.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowkit_prefect import _stack

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POOL = "flowkit-process"
ANSWER_COLLECTION = "load-answer"
CLEAN_ORDERS = (
    "order_id,customer_email,amount,currency,status\n"
    "1,a@heronworks.example,10.5,EUR,paid\n"
    "2,b@heronworks.example,20.0,USD,shipped\n"
    "3,c@heronworks.example,30.25,GBP,refunded\n"
)


@dataclass
class LoadStack:
    """A running stack: where it lives, its environment, the workers' PIDs."""

    root: Path
    stack: _stack.Stack
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def server_log(self) -> Path:
        return self.stack.log_file("server")


@dataclass
class LoadResult:
    """What became of the burst."""

    submitted: int
    states: Counter[str]
    wall: float  # seconds from the first submission until every run was final (or the timeout)
    not_final: list[str]  # "<flow>: <state>" of runs still not final at the timeout
    failures: list[str]  # "<flow> <run name>: <state> <message>" of final runs not Completed
    submit_errors: list[str] = field(default_factory=list)  # runs the server did not create

    @property
    def completed(self) -> int:
        return self.states.get("Completed", 0)

    @property
    def runs_per_minute(self) -> float:
        return 60.0 * self.completed / self.wall if self.wall else 0.0


def _run(args: list[str], env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


@contextlib.contextmanager
def load_stack(
    database: str,
    api_port: int,
    postgres_port: int = 0,
    workers: int = 2,
    worker_limit: int = 4,
    keep: bool = False,
) -> Iterator[LoadStack]:
    """Start server (and cluster), deploy, start ``workers`` process workers; stop all by PID.

    The folder is made with ``tempfile`` under /tmp (not pytest's private tmp folder): when the
    tests run as root, PostgreSQL runs as another OS user, which must reach its data folder.
    """
    root = Path(tempfile.mkdtemp(prefix=f"flowkit-load-{database}-"))
    root.chmod(0o755)
    stack = _stack.Stack(root, api_port, database, postgres_port or _stack._postgres.DEFAULT_PORT)
    env = {
        **os.environ,
        **stack.env(),
        "FLOWKIT_PROJECT_DIR": str(REPO),
        "FLOWKIT_DATA_DIR": str(root / "data"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # start_server spawns the server with os.environ
    running = LoadStack(root, stack, env)
    try:
        _stack.start_server(stack)
        prefect, flowkit = str(BIN / "prefect"), str(BIN / "flowkit")
        _run([prefect, "--no-prompt", "block", "register", "-m", "flowkit_prefect.blocks"], env)
        _run([flowkit, "blocks", "save", "blocks"], env)
        _run([prefect, "--no-prompt", "work-pool", "create", POOL, "--type", "process"], env)
        _run([prefect, "--no-prompt", "deploy", "--name", "default"], env)  # the process ones
        (root / "logs").mkdir(exist_ok=True)
        for number in range(workers):
            with open(root / "logs" / f"worker-{number}.log", "ab") as log:
                running.workers.append(
                    subprocess.Popen(
                        [
                            *(prefect, "worker", "start", "--pool", POOL, "--type", "process"),
                            *("--limit", str(worker_limit), "--name", f"load-{number}"),
                        ],
                        cwd=REPO,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its group: stopping it ends its flow runs
                    )
                )
        yield running
    finally:
        for proc in running.workers:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=20)
                    break
                except subprocess.TimeoutExpired:
                    continue
        _stack.stop_server(stack)
        _stack.stop_postgres(stack)
        os.environ.clear()
        os.environ.update(saved)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _records(tag: str) -> list[dict[str, Any]]:
    return [
        {"id": f"{tag}-{i}", "text": f"Document {i} of {tag}: refunds take {i + 10} days."}
        for i in range(3)
    ]


def burst_parameters(root: Path, runs: int) -> list[tuple[str, dict[str, Any]]]:
    """``runs`` (deployment, parameters), per 10: 4 validated-pipeline (the heaviest to start:
    Great Expectations), 3 rag-ingest (distinct collections), 3 rag-answer (no model call)."""
    data = root / "clean-orders.csv"
    data.write_text(CLEAN_ORDERS)
    out: list[tuple[str, dict[str, Any]]] = []
    for number in range(runs):
        kind = "VIAVIAVIAV"[number % 10]
        if kind == "V":
            params = {
                "input_path": str(data),
                "output_dir": str(root / "validated" / str(number)),
                "schema_snapshot": None,
            }
            out.append(("validated-pipeline/default", params))
        elif kind == "I":
            tag = f"load-{number}"
            out.append(("rag-ingest/default", {"records": _records(tag), "collection": tag}))
        else:
            out.append(
                (
                    "rag-answer/default",
                    {
                        "question": f"How long do refunds take? ({number})",
                        "collection": ANSWER_COLLECTION,
                        "min_score": 1.0,
                    },
                )
            )
    return out


def _deployment_ids(client: Any) -> dict[str, Any]:
    names = {f.id: f.name for f in client.read_flows()}
    return {f"{names[d.flow_id]}/{d.name}": d.id for d in client.read_deployments()}


def _wait_final(client: Any, ids: list[Any], timeout: float) -> tuple[list[Any], bool]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    while True:
        found = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids) + 10
        )
        if len(found) == len(ids) and all(r.state and r.state.is_final() for r in found):
            return found, True
        if time.monotonic() > deadline:
            return found, False
        time.sleep(1.0)


def prepare(running: LoadStack) -> None:
    """Ingest the collection the rag-answer runs search (one run, before the burst)."""
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(running.stack.api_url) as client:
        deployment = _deployment_ids(client)["rag-ingest/default"]
        params = {"records": _records(ANSWER_COLLECTION), "collection": ANSWER_COLLECTION}
        run = client.create_flow_run_from_deployment(deployment, parameters=params)
        (done,), final = _wait_final(client, [run.id], timeout=180)
        if not final or done.state_name != "Completed":
            raise RuntimeError(f"the preparing rag-ingest run ended {done.state_name}")


def burst(running: LoadStack, runs: int = 50, timeout: float = 300.0) -> LoadResult:
    """Create ``runs`` deployment runs at once (10 threads), wait until all are final."""
    from prefect.client.orchestration import SyncPrefectClient

    plan = burst_parameters(running.root, runs)
    with SyncPrefectClient(running.stack.api_url) as client:
        deployments = _deployment_ids(client)
    names = {deployment.split("/")[0] for deployment, _ in plan}

    def submit(item: tuple[str, dict[str, Any]]) -> Any:
        try:
            with SyncPrefectClient(running.stack.api_url) as client:
                return client.create_flow_run_from_deployment(
                    deployments[item[0]], parameters=item[1]
                ).id
        except Exception as exc:  # after the client's own retries: the run is lost
            return f"{item[0]}: {type(exc).__name__}: {str(exc)[:160]}"

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=10) as pool:
        submitted = list(pool.map(submit, plan))
    ids = [one for one in submitted if not isinstance(one, str)]
    submit_errors = [one for one in submitted if isinstance(one, str)]
    with SyncPrefectClient(running.stack.api_url) as client:
        found, _ = _wait_final(client, ids, timeout)
        wall = time.monotonic() - started
        flows = {f.id: f.name for f in client.read_flows() if f.name in names}
    states = Counter(r.state_name or "?" for r in found)
    if len(ids) > len(found):
        states["(missing)"] = len(ids) - len(found)
    if submit_errors:
        states["(not created)"] = len(submit_errors)
    not_final = [
        f"{flows.get(r.flow_id, '?')}: {r.state_name}"
        for r in found
        if not (r.state and r.state.is_final())
    ]
    failures = [
        f"{flows.get(r.flow_id, '?')} {r.name}: {r.state_name} "
        f"{(r.state.message or '')[:200] if r.state else ''}"
        for r in found
        if r.state and r.state.is_final() and r.state_name != "Completed"
    ]
    return LoadResult(runs, states, wall, not_final, failures, submit_errors)


def server_log_errors(running: LoadStack) -> Counter[str]:
    """How often the server log names the usual database errors."""
    text = running.server_log.read_text(errors="replace") if running.server_log.exists() else ""
    lowered = text.lower()
    return Counter(
        {
            needle: lowered.count(needle)
            for needle in ("database is locked", "operationalerror", "503", "traceback")
            if needle in lowered
        }
    )

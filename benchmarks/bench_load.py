"""50 deployment runs at once on a Prefect server on SQLite and on PostgreSQL; and the
cross-worker LLM fan-out (``map_llm(limit_name=...)``) on PostgreSQL against the ideal time.

What: for each database, a fresh local stack in a temporary folder (``tests/load.py``: a Prefect
server, prefect.yaml's process deployments, two process workers with ``--limit 4`` each), one
preparing rag-ingest run, then ``--runs`` deployment runs (default 50) created at once: 4 in 10
validated-pipeline, 3 rag-ingest of inline records into their own collections, 3 rag-answer with
``min_score=1.0`` (no model call). Printed per database: completed / failed / crashed / not created
(the server refused to create the run, after the client's retries) / other (not final at
``--timeout``) counts, the wall time from the first submission until all runs were
final, runs per minute, and what the server log says about the database ("database is locked",
OperationalError, 503, tracebacks), with the failed runs' messages.

Then, against the PostgreSQL server before it stops: a flow fanning ``--limit-calls`` prompts
(default 200) out with ``map_llm(..., limit_name=...)`` at concurrency 25 to an echo model of
fixed latency (0.5 s), the slots leased from a Prefect global concurrency limit through the API
as workers on several machines would. Target: wall time <= 1.3 x the ideal (latency x waves).

Exit status: 0 when it ran (a measurement: missed targets and failed runs are printed, not
fatal), 1 on an error. Takes ~10 minutes on 2 CPUs.

    .venv/bin/python benchmarks/bench_load.py [--runs 50] [--databases sqlite postgres]
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
os.environ.pop("PREFECT_API_URL", None)  # always servers of our own
os.environ.pop("PREFECT_UI_URL", None)
os.environ.pop("PREFECT_HOME", None)

import argparse
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.load

from _common import report, run_main

from tests.load import LoadResult, burst, load_stack, prepare, server_log_errors

TARGET_LIMIT_VS_IDEAL = 1.3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _line(database: str, result: LoadResult) -> str:
    states = result.states
    lost = len(result.submit_errors)
    known = ("Completed", "Failed", "Crashed")
    other = result.submitted - lost - sum(states.get(k, 0) for k in known)
    return (
        f"{database:<10}{result.submitted:>6}{result.completed:>10}{states.get('Failed', 0):>8}"
        f"{states.get('Crashed', 0):>9}{lost:>13}{other:>7}{result.wall:>9.1f}"
        f"{result.runs_per_minute:>10.1f}"
    )


def fanout_on(api_url: str, calls: int, concurrency: int, latency: float) -> tuple[float, float]:
    """The ``flow limit_name`` row of bench_llm_fanout.py against ``api_url``: (wall, ideal)."""
    from bench_llm_fanout import (
        NO_CACHE,
        EchoChatModel,
        delete_limits,
        ideal_seconds,
        make_prompts,
        run_sync_flow,
        wait_for_server,
    )
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    model, tag = EchoChatModel(latency=latency), uuid.uuid4().hex[:8]
    with (
        tempfile.TemporaryDirectory(prefix="flowkit-bench-load-") as tmp,
        temporary_settings(
            updates={PREFECT_API_URL: api_url, PREFECT_LOCAL_STORAGE_PATH: str(Path(tmp) / "r")}
        ),
    ):
        warm = make_prompts(concurrency, f"warm-{tag}")  # untimed: imports, clients, first runs
        wait_for_server(run_sync_flow("warm-up", model, warm, concurrency, NO_CACHE)[0])
        limit_name = f"bench-load-{tag}"
        try:
            timing, _ = run_sync_flow(
                "flow limit_name",
                model,
                make_prompts(calls, f"limit-{tag}"),
                concurrency,
                NO_CACHE,
                limit_name,
            )
        finally:
            delete_limits(f"flowkit-llm-{limit_name}")
    return timing.wall, ideal_seconds(calls, concurrency, latency)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="deployment runs at once (50)")
    parser.add_argument(
        "--databases", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"]
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="per burst, seconds (600)")
    parser.add_argument("--workers", type=int, default=2, help="process workers (2)")
    parser.add_argument("--worker-limit", type=int, default=4, help="runs per worker (4)")
    parser.add_argument("--limit-calls", type=int, default=200, help="fan-out calls (200; 0 off)")
    args = parser.parse_args(argv)
    print(
        f"{args.runs} deployment runs at once, {args.workers} process workers x {args.worker_limit}"
        f" runs; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs."
    )
    results: dict[str, LoadResult] = {}
    notes: dict[str, list[str]] = {}
    fanout: tuple[float, float] | None = None
    for database in args.databases:
        started = time.monotonic()
        with load_stack(
            database, _free_port(), _free_port(), args.workers, args.worker_limit
        ) as running:
            print(f"[{database}] stack up in {time.monotonic() - started:.0f} s", flush=True)
            prepare(running)
            result = burst(running, args.runs, args.timeout)
            results[database] = result
            errors = server_log_errors(running)
            print(f"[{database}] {dict(result.states)} in {result.wall:.0f} s", flush=True)
            notes[database] = [f"server log: {dict(errors) or 'no database errors'}"]
            notes[database] += [f"  {line}" for line in result.failures[:10]]
            notes[database] += [f"  not final: {line}" for line in result.not_final[:10]]
            notes[database] += [f"  not created: {line}" for line in result.submit_errors[:5]]
            if database == "postgres" and args.limit_calls:
                fanout = fanout_on(running.stack.api_url, args.limit_calls, 25, 0.5)
    print(
        f"\n{'database':<10}{'runs':>6}{'completed':>10}{'failed':>8}{'crashed':>9}"
        f"{'not created':>13}{'other':>7}{'wall s':>9}{'runs/min':>10}"
    )
    for database, result in results.items():
        print(_line(database, result))
        report(
            f"load {database}: runs completed / runs submitted at once ({args.runs})",
            result.completed,
            result.submitted,
            unit="runs",
        )
        report(
            f"load {database}: completed runs per minute ({args.runs} at once)",
            result.runs_per_minute,
            None,
            unit="runs/min",
        )
    for database, lines in notes.items():
        print(f"\n{database}: " + "\n".join(lines))
    if fanout is not None:
        wall, ideal = fanout
        ratio = wall / ideal
        verdict = "MEETS" if ratio <= TARGET_LIMIT_VS_IDEAL else "BELOW"
        print(
            f"\nmap_llm(limit_name=...) on PostgreSQL: {args.limit_calls} calls, concurrency 25, "
            f"latency 0.5 s: {wall:.2f} s against the ideal {ideal:.2f} s = {ratio:.3f} x ideal "
            f"(target <= {TARGET_LIMIT_VS_IDEAL}): {verdict}"
        )
        report(
            f"load postgres: map_llm(limit_name) / ideal ({args.limit_calls} calls, "
            "concurrency 25, latency 0.5 s)",
            wall,
            ideal,
            target=f"<= {TARGET_LIMIT_VS_IDEAL}",
        )
    return 0


if __name__ == "__main__":
    run_main(main)

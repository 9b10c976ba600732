"""Crash-resume: how long a new run waits for the embedded Qdrant store after its holder died.

What: against a local ``prefect server start`` on loopback in a temporary folder (as ``make
run`` starts it: SQLite, every service on; or the server in ``PREFECT_API_URL``), a subprocess
runs a flow that takes a ``QdrantStore`` folder (its lock: one slot of a Prefect global
concurrency limit on a 60 s lease, plus the holder record with a heartbeat,
``flowkit_prefect/blocks/_store_lock.py``) and is then killed with SIGKILL, by its PID. A flow
run in this process then opens the same store; the time until its session is open is the wait:

* **dead PID**: the holder record names a PID on this host that is gone, so the waiter releases
  the dead run's slot at once;
* **silent holder**: the record is rewritten as if the holder ran on another host (as
  ``tests/test_store_lock.py`` does), so its PID cannot be checked: the waiter takes over once
  the heartbeat is ``STALE_SECONDS`` (20 s) old. The wait is counted from the last heartbeat;
* **baseline, waiting out the lease**: the holder record is deleted after the kill, so the waiter
  has nothing to take over from: what happened before the take-over existed. The wait is the
  lease (60 s) plus however long the server takes to revoke an expired lease (its repossessor
  service looks every 15 s). ``--nominal-lease`` skips this run and uses the lease length itself
  (what ``make bench-quick`` does). Not on ``prefect_test_harness``'s temporary server: that
  ephemeral server runs no repossessor, so an expired lease there is never revoked.

Why: a crashed ingest must not stall the next run for the whole lease. Target: each wait
<= 30 s; the ratio to the baseline is shown too.

Exit status: 0 when it ran (a measurement, whether or not the target is met); 1 on an error, a
holder that never took the store, or a waiter that gave up (``--timeout``, default 180 s).

    .venv/bin/python benchmarks/bench_crash_resume.py [--nominal-lease]
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import argparse
import contextlib
import json
import logging
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from _common import report, run_main
from prefect import flow

from flowkit_prefect import QdrantStore, _stack
from flowkit_prefect.blocks._store_lock import HOLDER_FILE, STALE_SECONDS

TARGET_SECONDS = 30.0
HOLDER_START_TIMEOUT = 120.0
HOLDER = textwrap.dedent(
    """
    import sys, time
    from prefect import flow
    from flowkit_prefect import QdrantStore

    @flow(name="bench-store-holder")
    def hold(folder: str) -> None:
        with QdrantStore(location=folder).session() as client:
            client.get_collections()
            print("holding", flush=True)
            time.sleep(3600)

    hold(sys.argv[1])
    """
)


class TakeOverLog(logging.Handler):
    """Keeps the store lock's messages from the waiting run's logger (take-over, got it)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "embedded Qdrant store" in message:
            self.messages.append(message)


@dataclass
class Wait:
    """One measured wait for the store."""

    case: str
    seconds: float
    messages: list[str]

    @property
    def took_over(self) -> bool:
        return any("releasing its slot" in m for m in self.messages)


def start_holder(folder: Path, api_url: str) -> subprocess.Popen[str]:
    """A flow run in a subprocess that holds the store; returns once it holds it."""
    env = {**os.environ, "PREFECT_API_URL": api_url}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # our signals to the benchmark do not reach it, nor its to us
    )
    assert holder.stdout is not None
    deadline = time.monotonic() + HOLDER_START_TIMEOUT
    while "holding" not in (holder.stdout.readline() or ""):
        if holder.poll() is not None or time.monotonic() > deadline:
            kill(holder)
            raise RuntimeError("the holder exited or timed out before it held the store")
    return holder


def kill(holder: subprocess.Popen[str]) -> float:
    """SIGKILL the holder we started, by its PID; returns when it is dead (time.time())."""
    if holder.poll() is None:
        os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    return time.time()


def reopen(folder: Path, timeout: float, since: float) -> Wait:
    """A flow run that opens the store: seconds from ``since`` (time.time()) until its session
    is open, and what the store lock logged meanwhile."""
    capture = TakeOverLog()
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(capture)
    opened: dict[str, float] = {}

    @flow(name="bench-store-reopen", persist_result=False)
    def reopen_store() -> int:
        with QdrantStore(location=str(folder), lock_timeout_seconds=timeout).session() as client:
            opened["at"] = time.time()
            return len(client.get_collections().collections)

    try:
        reopen_store()
    finally:
        logger.removeHandler(capture)
    return Wait("", opened["at"] - since, capture.messages)


def crash_and_wait(case: str, folder: Path, api_url: str, timeout: float) -> Wait:
    """Start a holder, SIGKILL it, shape its record for ``case``, and time the next run."""
    holder = start_holder(folder, api_url)
    try:
        record = json.loads((folder / HOLDER_FILE).read_text())
    finally:
        since = kill(holder)
    if record.get("pid") != holder.pid:
        raise RuntimeError(f"the holder record names PID {record.get('pid')}, not {holder.pid}")
    if case == "silent":
        since = time.time()
        record.update(host="another-host", heartbeat=since)  # alive elsewhere until now
        (folder / HOLDER_FILE).write_text(json.dumps(record))
    elif case == "lease":
        (folder / HOLDER_FILE).unlink()  # no record: nothing to take over from
    wait = reopen(folder, timeout, since)
    wait.case = case
    return wait


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def lock_server(root: Path) -> Iterator[str]:
    """The server in ``PREFECT_API_URL`` when set; otherwise ``prefect server start`` on
    loopback under ``root`` (stopped by its PID file at the end), used by this process too."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield str(configured)
        return
    stack = _stack.Stack(root, _free_port())
    print(_stack.start_server(stack), flush=True)
    try:
        with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
            yield stack.api_url
    finally:
        print(_stack.stop_server(stack), flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--nominal-lease",
        action="store_true",
        help="do not wait out a lease; use its length (60 s) as the baseline",
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="waiter's lock timeout")
    return parser.parse_args(argv)


def describe(wait: Wait) -> str:
    """A line for the detail output: the wait and what the waiting run logged."""
    how = "took over" if wait.took_over else "no take-over"
    lines = [f"  {wait.case:<8} waited {wait.seconds:6.1f} s ({how})"]
    lines += [f"           log: {m}" for m in wait.messages[-3:]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    lease = QdrantStore().lock_lease_seconds
    cases = ["dead-pid", "silent"] + ([] if args.nominal_lease else ["lease"])
    print(
        f"Store lock: lease {lease:.0f} s, heartbeat stale after {STALE_SECONDS:.0f} s; cases "
        f"{', '.join(cases)}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs."
    )
    started = time.perf_counter()
    waits: dict[str, Wait] = {}
    with (
        tempfile.TemporaryDirectory(prefix="flowkit-bench-crash-") as tmp,
        lock_server(Path(tmp) / "server") as api_url,
    ):
        print(f"Prefect API: {api_url}")
        for case in cases:
            waits[case] = crash_and_wait(case, Path(tmp) / f"qdrant-{case}", api_url, args.timeout)
            print(describe(waits[case]), flush=True)
    print(f"\nTotal {time.perf_counter() - started:.0f} s, temporary server start-up included.")
    measured = "lease" in waits
    baseline = waits["lease"].seconds if measured else lease
    how = "measured" if measured else "nominal"
    print(f"baseline (waiting out the lease, {how}): {baseline:.1f} s")
    labels = {
        "dead-pid": "crash-resume wait: holder SIGKILLed, dead PID on this host",
        "silent": "crash-resume wait: silent holder on another host (heartbeat stops)",
    }
    for case, label in labels.items():
        wait = waits[case]
        met = wait.seconds <= TARGET_SECONDS
        print(
            f"{label}: {wait.seconds:.1f} s = {wait.seconds / baseline:.3f} x the lease wait "
            f"(target <= {TARGET_SECONDS:.0f} s): {'MET' if met else 'NOT MET'}"
        )
        report(
            f"{label} / lease wait ({how})",
            wait.seconds,
            baseline,
            target=f"<= {TARGET_SECONDS:.0f} s",
            on="ours",
        )
    return 0


if __name__ == "__main__":
    run_main(main)

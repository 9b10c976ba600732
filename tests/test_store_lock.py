"""The embedded store allows one process per folder: other runs wait on a global concurrency
limit (logging who holds it), give up with a clear error after the block's lock timeout, and a
holder killed with SIGKILL frees the folder at once (its holder record shows it is gone), or
after its heartbeat stops when it ran on another host."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from prefect import flow

from flowkit_prefect import QdrantStore, StoreBusyError
from flowkit_prefect.blocks._store_lock import HOLDER_FILE

HOLDER = textwrap.dedent(
    """
    import sys, time
    from flowkit_prefect import QdrantStore
    with QdrantStore(location=sys.argv[1], engine=sys.argv[3]).session() as client:
        client.get_collections()
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
    print("released", flush=True)
    """
)


def _hold(path: Path, seconds: float, api_url: str, engine: str = "auto") -> subprocess.Popen:
    env = {**os.environ, "PREFECT_API_URL": api_url}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds), engine],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "holding", proc.stderr.read()
    return proc


def test_a_second_process_waits_for_the_store(
    harness: str, tmp_path: Path, folder_engine: str
) -> None:
    path = tmp_path / "qdrant"
    holder = _hold(path, 4.0, harness, folder_engine)
    try:
        started = time.monotonic()
        with QdrantStore(location=str(path), engine=folder_engine).session() as client:
            waited = time.monotonic() - started
            client.get_collections()
        assert waited > 2.0  # it queued behind the holder instead of failing on the folder lock
        assert holder.wait(timeout=30) == 0
    finally:
        holder.kill()


def test_waiting_past_the_lock_timeout_is_a_clear_error(harness: str, tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    holder = _hold(path, 15.0, harness)
    try:
        store = QdrantStore(location=str(path), lock_timeout_seconds=1.0)
        with pytest.raises(StoreBusyError, match=r"held|is using"), store.session():
            pass
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_opening_a_busy_folder_directly_says_what_to_do(tmp_path: Path, folder_engine: str) -> None:
    store = QdrantStore(location=str(tmp_path / "qdrant"), engine=folder_engine)
    other = store.get_client()
    try:
        with pytest.raises(StoreBusyError, match="session"):
            store.get_client()
    finally:
        other.close()
    store.get_client().close()  # released


def test_a_session_waits_out_a_file_lock_that_is_being_released(
    harness: str, tmp_path: Path
) -> None:
    """A holder killed a moment ago keeps the folder's file lock until the kernel has torn it
    down; the next run's session waits those seconds instead of failing (CI saw it fail)."""
    store = QdrantStore(location=str(tmp_path / "qdrant"))
    dying = store.get_client()  # outside any session: only the file lock, as a killed run leaves
    releaser = threading.Timer(1.0, dying.close)
    releaser.start()
    try:
        started = time.monotonic()
        with store.session() as client:
            client.get_collections()
        assert 0.8 < time.monotonic() - started < 10
    finally:
        releaser.join()


KILLED_HOLDER = textwrap.dedent(
    """
    import sys, time
    from prefect import flow
    from flowkit_prefect import QdrantStore

    @flow(name="store-holder")
    def hold(folder: str) -> None:
        with QdrantStore(location=folder).session():
            print("holding", flush=True)
            time.sleep(600)

    hold(sys.argv[1])
    """
)


def _start_killed_holder(folder: Path, api_url: str) -> tuple[int, dict]:
    """A flow run that holds the store, killed with SIGKILL; its PID and holder record."""
    env = {**os.environ, "PREFECT_API_URL": api_url}
    holder = subprocess.Popen(
        [sys.executable, "-c", KILLED_HOLDER, str(folder)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "holding" not in (holder.stdout.readline() or ""):
            assert holder.poll() is None, "the holder exited before it held the store"
        record = json.loads((folder / HOLDER_FILE).read_text())
        assert record["pid"] == holder.pid and record["flow_run_name"] and record["lease_id"]
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    return holder.pid, record


def _reopen(folder: Path) -> int:
    @flow
    def reopen() -> int:
        with QdrantStore(location=str(folder), lock_timeout_seconds=180).session() as client:
            return len(client.get_collections().collections)

    return reopen()


def test_a_killed_holder_frees_the_store_at_once(
    harness: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Same host: the record's PID is dead, so the waiter releases the lease right away (the
    lease itself would keep the slot for 60 s and more)."""
    folder = tmp_path / "qdrant"
    pid, record = _start_killed_holder(folder, harness)
    killed = time.monotonic()
    with caplog.at_level(logging.INFO):
        assert _reopen(folder) == 0
    waited = time.monotonic() - killed
    print(f"\nstore free {waited:.1f} s after its holder was killed")
    assert waited <= 10, f"waited {waited:.1f} s for a crashed holder"
    messages = [r.getMessage() for r in caplog.records]
    took_over = [m for m in messages if "releasing its slot" in m]
    assert took_over and f"PID {pid}" in took_over[0] and record["flow_run_name"] in took_over[0]
    assert "has exited" in took_over[0]
    assert not (folder / HOLDER_FILE).exists()  # released: the record went with the slot


def test_a_silent_holder_elsewhere_is_released_when_its_heartbeat_stops(
    harness: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A holder on another host (a container, another machine) cannot be checked by PID: the
    waiter logs who holds the store while the heartbeat is fresh and takes over once it is
    STALE_SECONDS old."""
    from flowkit_prefect.blocks._store_lock import STALE_SECONDS

    folder = tmp_path / "qdrant"
    _, record = _start_killed_holder(folder, harness)
    record.update(host="another-host", heartbeat=time.time())  # as if alive elsewhere
    (folder / HOLDER_FILE).write_text(json.dumps(record))
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        assert _reopen(folder) == 0
    waited = time.monotonic() - started
    print(f"\nstore free {waited:.1f} s after the holder's last heartbeat")
    assert STALE_SECONDS - 1 <= waited <= STALE_SECONDS + 10
    messages = [r.getMessage() for r in caplog.records]
    waiting = [m for m in messages if "Waiting for the embedded Qdrant store" in m]
    assert waiting and "another-host" in waiting[0] and "so far" in waiting[0]
    assert any("heartbeat stopped" in m for m in messages)

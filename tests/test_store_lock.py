"""The embedded store allows one process per folder: other runs wait on a global concurrency
limit, and give up with a clear error after the block's lock timeout."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flowkit_prefect import QdrantStore, StoreBusyError

HOLDER = textwrap.dedent(
    """
    import sys, time
    from flowkit_prefect import QdrantStore
    with QdrantStore(location=sys.argv[1]).session() as client:
        client.get_collections()
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
    print("released", flush=True)
    """
)


def _hold(path: Path, seconds: float, api_url: str) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_API_URL": api_url}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "holding", proc.stderr.read()
    return proc


def test_a_second_process_waits_for_the_store(harness: str, tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    holder = _hold(path, 4.0, harness)
    try:
        started = time.monotonic()
        with QdrantStore(location=str(path)).session() as client:
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
        with pytest.raises(StoreBusyError, match="another run is using"), store.session():
            pass
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_opening_a_busy_folder_directly_says_what_to_do(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    path = tmp_path / "qdrant"
    path.mkdir()
    other = QdrantClient(path=str(path))
    try:
        with pytest.raises(StoreBusyError, match="session"):
            QdrantStore(location=str(path)).get_client()
    finally:
        other.close()

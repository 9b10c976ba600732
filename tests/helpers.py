"""Small helpers shared by the tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

from flowkit_prefect import QdrantStore


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_until_paused(
    run: Callable[[], Any], run_name: str, timeout: float = 60.0
) -> tuple[UUID, threading.Thread, dict[str, Any]]:
    """Start a flow in a thread and wait until its run (named ``run_name``) pauses for input.

    Returns the run id, the thread, and a dict that receives ``result`` when the flow ends.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    box: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: box.setdefault("result", run()), daemon=True)
    worker.start()
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name]))
            )
            if runs and runs[0].state and runs[0].state.is_paused():
                return runs[0].id, worker, box
            time.sleep(0.25)
    raise AssertionError(f"flow run {run_name!r} never paused for input")


@contextlib.contextmanager
def llama_server(folder: Path, n_ctx: int = 2048, api_key: str | None = None) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on loopback serving the offline model (alias
    ``smollm2``), its log in ``folder``; yields its ``/v1`` URL and stops it by its handle.
    With ``api_key`` the server refuses calls without that key."""
    import pytest

    from flowkit_prefect.models.local_llm import default_model_path

    port = free_port()
    log_path = folder / "server.log"
    args = [
        *(sys.executable, "-m", "llama_cpp.server", "--model", default_model_path()),
        *("--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port)),
        *("--n_ctx", str(n_ctx), "--n_threads", "2"),
        *(("--api_key", api_key) if api_key else ()),
    ]
    with open(log_path, "wb") as log:  # a file, not a pipe: the server logs a lot
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ}, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}/v1"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        for _ in range(480):
            try:
                request = urllib.request.Request(f"{url}/models", headers=headers)
                with urllib.request.urlopen(request, timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"llama.cpp server exited: {log_path.read_text()[-2000:]}")
                time.sleep(0.25)
        else:
            pytest.fail("llama.cpp server did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


STORE_ENGINES = ("edge", "local", "memory")
"""Every engine a store can have: Qdrant's engine in-process over a folder (the default),
qdrant-client's local mode over a folder, and qdrant-client in memory."""


def make_store(engine: str, folder: Path, **fields: Any) -> QdrantStore:
    """A ``QdrantStore`` served by ``engine`` (``folder`` is unused for ``memory``)."""
    if engine == "memory":
        return QdrantStore(location=":memory:", **fields)
    return QdrantStore(location=str(folder), engine=engine, **fields)


def wait_for_events(
    name: str, resource_id: str, count: int = 1, timeout: float = 20.0
) -> list[Any]:
    """Events ``name`` about ``resource_id`` from the current Prefect API, newest first; waits
    up to ``timeout`` s for ``count`` of them (events reach the server asynchronously)."""
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    flt = EventFilter(
        event=EventNameFilter(name=[name]), resource=EventResourceFilter(id=[resource_id])
    )
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            events = client.read_events(filter=flt, limit=50).events
            if len(events) >= count or time.monotonic() > deadline:
                return events
            time.sleep(0.5)

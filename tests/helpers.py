"""Small helpers shared by the tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID


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

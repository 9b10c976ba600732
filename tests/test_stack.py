"""`flowkit up` / `flowkit down` (Prefect's background server) in a folder of their own."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from flowkit_prefect import _stack
from tests.helpers import free_port

FLOWKIT = str(Path(sys.executable).with_name("flowkit"))


def _flowkit(root: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return subprocess.run(
        [FLOWKIT, *args],
        cwd=root,
        env={**env, "FLOWKIT_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_up_twice_then_down_leaves_no_process(tmp_path: Path) -> None:
    port = free_port()
    stack = _stack.Stack(tmp_path, port)
    first = _flowkit(tmp_path, port, "up")
    try:
        assert first.returncode == 0, first.stderr
        match = re.search(r"Started Prefect server \(pid (\d+)\)", first.stdout)
        assert match, first.stdout
        pid = int(match.group(1))
        assert _stack.api_healthy(stack.api_url)
        again = _flowkit(tmp_path, port, "up")
        assert again.returncode == 0 and f"already running (pid {pid})" in again.stdout
        # Asked for PostgreSQL while ours runs on SQLite: refused, nothing else started.
        other = _flowkit(tmp_path, port, "up", "--database", "postgres")
        assert other.returncode != 0
        assert f"server (pid {pid}) runs on sqlite, not postgres" in other.stderr, other.stderr
        assert "make stop" in other.stderr and not stack.postgres.data_dir.exists()
    finally:
        down = _flowkit(tmp_path, port, "down")
    assert down.returncode == 0, down.stderr
    assert f"server: stopped (pid {pid})" in down.stdout and "worker: not running" in down.stdout
    assert not _stack._alive(pid)
    assert not _stack.api_healthy(stack.api_url)
    assert not stack.server_pid_file.exists()
    nothing = _flowkit(tmp_path, port, "down")
    assert "server: not running" in nothing.stdout and "worker: not running" in nothing.stdout


def test_up_names_flowkit_port_when_another_program_holds_the_port(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        done = _flowkit(tmp_path, port, "up")
    assert done.returncode == 1
    assert f"Port {port} is taken" in done.stderr and "FLOWKIT_PORT" in done.stderr
    assert not _stack.Stack(tmp_path, port).server_pid_file.exists()


def test_a_stale_pid_file_does_not_count_as_running(tmp_path: Path) -> None:
    stack = _stack.Stack(tmp_path, free_port())
    stack.server_pid_file.parent.mkdir(parents=True)
    stack.worker_pid_file.parent.mkdir(parents=True)
    stack.worker_pid_file.write_text("999999999")
    other = subprocess.Popen(["sleep", "30"])  # alive, but not a Prefect process (a reused PID)
    try:
        stack.server_pid_file.write_text(str(other.pid))
        assert _stack._running_pid(stack.server_pid_file) is None
        assert _stack.stop_server(stack).startswith("server: not running")
        stack.worker_pid_file.write_text(str(other.pid))
        assert _stack.stop_worker(stack) == "worker: not running"
        assert other.poll() is None  # neither stop signalled it
        assert not stack.worker_pid_file.exists() and not stack.server_pid_file.exists()
    finally:
        other.kill()
        other.wait()

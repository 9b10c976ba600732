"""Start and stop the local Prefect server and process worker that ``make run`` uses.

Everything lives under ``.flowkit/`` in the project folder: the server's SQLite database
(``PREFECT_HOME``), logs and PID files. Processes are started in their own session and stopped
by their recorded PID (process group), never by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from flowkit_prefect.exceptions import ConfigurationError

DEFAULT_PORT = 4200
HEALTH_TIMEOUT_SECONDS = 90.0


@dataclass(frozen=True)
class Stack:
    """Paths and addresses of a local stack rooted at ``root`` (normally the project folder)."""

    root: Path
    port: int = DEFAULT_PORT

    @property
    def state_dir(self) -> Path:
        return self.root / ".flowkit"

    @property
    def prefect_home(self) -> Path:
        return self.state_dir / "prefect-home"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pid_file(self, name: str) -> Path:
        return self.state_dir / "pids" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def env(self) -> dict[str, str]:
        """Environment for commands that talk to this stack."""
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_UI_URL": self.ui_url,
            "HF_HUB_OFFLINE": "1",
        }


def api_healthy(api_url: str, timeout: float = 2.0) -> bool:
    """True when ``GET {api_url}/health`` answers 200."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _running_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _spawn(stack: Stack, name: str, args: list[str], extra_env: dict[str, str]) -> int:
    stack.pid_file(name).parent.mkdir(parents=True, exist_ok=True)
    stack.log_file(name).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **stack.env(), **extra_env}
    with open(stack.log_file(name), "ab") as log:
        proc = subprocess.Popen(
            args,
            cwd=stack.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() can end its children too
        )
    stack.pid_file(name).write_text(str(proc.pid))
    return proc.pid


def start_server(stack: Stack) -> str:
    """Start ``prefect server start`` on 127.0.0.1 unless this stack's server already runs."""
    if _running_pid(stack.pid_file("server")) and api_healthy(stack.api_url):
        return f"Prefect server already running at {stack.ui_url}"
    if api_healthy(stack.api_url):
        raise ConfigurationError(
            f"Something else already serves a Prefect API on port {stack.port}. Stop it, or use "
            f"it by exporting PREFECT_API_URL={stack.api_url}, or pick another port with "
            "FLOWKIT_PORT=<port>."
        )
    stack.prefect_home.mkdir(parents=True, exist_ok=True)
    prefect = str(Path(sys.executable).with_name("prefect"))
    args = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(stack.port)]
    pid = _spawn(stack, "server", [*args, "--analytics-off"], {})
    deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if api_healthy(stack.api_url):
            return f"Started Prefect server (pid {pid}) at {stack.ui_url}"
        if _running_pid(stack.pid_file("server")) is None:
            break
        time.sleep(0.5)
    tail = _tail(stack.log_file("server"))
    stop_process(stack, "server")
    raise ConfigurationError(
        f"The Prefect server did not become healthy on {stack.api_url}. Last log lines:\n{tail}"
    )


def start_worker(stack: Stack, pool: str, api_url: str) -> str:
    """Start a process worker for ``pool`` unless one from this stack already runs."""
    pid = _running_pid(stack.pid_file("worker"))
    if pid:
        return f"Worker already running (pid {pid}) on pool {pool!r}"
    prefect = str(Path(sys.executable).with_name("prefect"))
    pid = _spawn(
        stack,
        "worker",
        [prefect, "worker", "start", "--pool", pool, "--type", "process"],
        {"PREFECT_API_URL": api_url, "PREFECT_WORKER_QUERY_SECONDS": "2"},
    )
    return f"Started process worker (pid {pid}) on pool {pool!r}; log: {stack.log_file('worker')}"


def stop_process(stack: Stack, name: str, timeout: float = 20.0) -> str:
    """Stop a process this stack started, by its recorded PID (and its process group)."""
    pid_file = stack.pid_file(name)
    pid = _running_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return f"{name}: not running"
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _running_pid(pid_file):
        time.sleep(0.2)
    if _running_pid(pid_file):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return f"{name}: stopped (pid {pid})"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"

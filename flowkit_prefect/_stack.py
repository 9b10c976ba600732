"""Start and stop the local Prefect server and process worker that ``make run`` uses.

The server is ``prefect server start`` with its PID in Prefect's own PID file (``server.pid`` in
``PREFECT_HOME``, under ``.flowkit/``), so ``prefect server stop`` stops it. This module adds only
what Prefect's commands lack: a server that keeps a log and outlives the command that started it,
waiting until the API answers, errors that say what to do (port taken, server never healthy, with
its log), and a background process worker (``prefect worker start`` runs in the foreground only)
with a PID file, stopped by that PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from flowkit_prefect import _postgres
from flowkit_prefect.exceptions import ConfigurationError

DEFAULT_PORT = 4200
HEALTH_TIMEOUT_SECONDS = 90.0
PREFECT = str(Path(sys.executable).with_name("prefect"))


@dataclass(frozen=True)
class Stack:
    """Paths and addresses of a local stack rooted at ``root`` (normally the project folder)."""

    root: Path
    port: int = DEFAULT_PORT
    database: str = "sqlite"  # or "postgres": the server's database is the cluster below
    postgres_port: int = _postgres.DEFAULT_PORT

    @property
    def postgres(self) -> _postgres.Cluster:
        """The local PostgreSQL cluster of ``database="postgres"`` (``.flowkit/postgres/``)."""
        return _postgres.Cluster(self.state_dir / "postgres", self.postgres_port)

    @property
    def state_dir(self) -> Path:
        return self.root / ".flowkit"

    @property
    def prefect_home(self) -> Path:
        return self.state_dir / "prefect-home"

    @property
    def server_pid_file(self) -> Path:
        return self.prefect_home / "server.pid"  # where `prefect server start --background` writes

    @property
    def worker_pid_file(self) -> Path:
        return self.state_dir / "pids" / "worker.pid"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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


def _alive(pid: int) -> bool:
    """True while ``pid`` runs a Prefect command: a PID file can outlive its process (a reboot)
    and the PID be reused by another program."""
    try:
        os.kill(pid, 0)
        if not Path("/proc/self").exists():
            return True  # no /proc (macOS): the signal is all there is to check
        return b"prefect" in Path(f"/proc/{pid}/cmdline").read_bytes()  # empty for a zombie
    except OSError:
        return False


def _port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port`` (as Prefect itself checks, by binding)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _running_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not _alive(pid)


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def _prefect(stack: Stack, *args: str, timeout: float = 120.0) -> tuple[int | None, str]:
    """Run ``prefect *args`` against this stack: its exit code (None on timeout) and last lines."""
    try:
        done = subprocess.run(
            [PREFECT, *args],
            cwd=stack.root,
            env={**os.environ, **stack.env()},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            start_new_session=True,  # so a Ctrl-C in `make run` does not stop the server it starts
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # it kept running: what it printed meanwhile
        return None, _tail(
            b"".join(part or b"" for part in (exc.stdout, exc.stderr)).decode(errors="replace")
        )
    return done.returncode, _tail((done.stdout + done.stderr).decode(errors="replace"))


def start_server(stack: Stack) -> str:
    """Start ``prefect server start`` on 127.0.0.1 with its output in ``.flowkit/logs/server.log``
    and its PID where ``prefect server stop`` looks (``PREFECT_HOME/server.pid``); then wait until
    its API answers. With ``database="postgres"`` the local cluster is started first (initialised
    once) and the server gets ``PREFECT_API_DATABASE_CONNECTION_URL`` pointing at it.

    Not ``--background``: Prefect's background server writes to pipes nobody reads once the
    starting command exits, so it keeps no log and (seen here) dies when it logs a lot later.
    """
    database = ""
    server_env = {**os.environ, **stack.env()}
    running = _running_pid(stack.server_pid_file)
    if running and api_healthy(stack.api_url):
        _check_same_database(stack, running)
    if stack.database == "postgres":
        database = _postgres.start(stack.postgres) + "\n"
        server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = stack.postgres.url
    if api_healthy(stack.api_url):
        if running:
            return f"{database}Prefect server already running (pid {running}) at {stack.ui_url}"
        raise ConfigurationError(
            f"Something else already serves a Prefect API on port {stack.port}. Stop it, or use "
            f"it by exporting PREFECT_API_URL={stack.api_url}, or pick another port with "
            "FLOWKIT_PORT=<port>."
        )
    log_file = stack.log_file("server")
    if not running and not _port_free(stack.port):
        raise ConfigurationError(
            f"Port {stack.port} is taken by another program. Stop it, or pick another port "
            "with FLOWKIT_PORT=<port>, or use a Prefect server you run yourself by exporting "
            "PREFECT_API_URL."
        )
    proc: subprocess.Popen[bytes] | None = None
    if not running:  # a PID file left by a server that died is stale
        stack.server_pid_file.unlink(missing_ok=True)
        stack.prefect_home.mkdir(parents=True, exist_ok=True)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        args = ["server", "start", "--host", "127.0.0.1", "--port", str(stack.port)]
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(
                [PREFECT, *args, "--analytics-off"],
                cwd=stack.root,
                env=server_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in `make run` does not stop it
            )
        stack.server_pid_file.write_text(str(proc.pid))
        _database_file(stack).write_text(stack.database)
    deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
    # The process we just started is watched through its handle: right after Popen returns, the
    # child can still be inside execve (its /proc cmdline empty), which _running_pid takes as gone.
    while time.monotonic() < deadline and (
        proc.poll() is None if proc else _running_pid(stack.server_pid_file)
    ):
        if api_healthy(stack.api_url):
            pid = proc.pid if proc else _running_pid(stack.server_pid_file)
            started = f"Started Prefect server (pid {pid}) at {stack.ui_url}; log: {log_file}"
            return database + started
        time.sleep(0.5)
    stop_server(stack)
    if proc and proc.poll() is None:  # not stopped by its PID file: by its handle
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    tail = _tail(log_file.read_text(errors="replace")) if log_file.exists() else "(no output)"
    raise ConfigurationError(
        f"The Prefect server did not become healthy on {stack.api_url}. Last lines of "
        f"{log_file}:\n{tail}"
    )


def _database_file(stack: Stack) -> Path:
    return stack.prefect_home / "server.database"


def _check_same_database(stack: Stack, pid: int) -> None:
    """A server asked for on PostgreSQL while ours runs on SQLite: say so rather than reuse it
    (with the database unset or SQLite, the running server is reused, whatever it runs on)."""
    try:
        running_on = _database_file(stack).read_text().strip() or "sqlite"
    except OSError:
        running_on = "sqlite"  # servers started before the file existed ran on SQLite
    if stack.database == "postgres" and running_on != "postgres":
        raise ConfigurationError(
            f"The local Prefect server (pid {pid}) runs on {running_on}, not {stack.database}. "
            f"Stop it with `make stop` (your runs stay in its database), then start again with "
            f"`make run DB={stack.database}`."
        )


def stop_server(stack: Stack, timeout: float = 20.0) -> str:
    """``prefect server stop`` for this stack's server, then wait until the process is gone."""
    if not stack.server_pid_file.exists():
        return "server: not running"
    pid = _running_pid(stack.server_pid_file)
    if pid is None:  # `prefect server stop` would signal whatever now has that PID
        stack.server_pid_file.unlink(missing_ok=True)
        return "server: not running (removed a stale PID file)"
    _prefect(stack, "server", "stop")  # SIGTERM, deletes the PID file, does not wait
    if not _wait_gone(pid, timeout):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # its own process group (start_new_session)
    return f"server: stopped (pid {pid})"


def stop_postgres(stack: Stack) -> str:
    """Stop the local PostgreSQL cluster under ``.flowkit/postgres/`` if it runs (whatever
    ``database`` says now: it may have been started with another setting)."""
    return _postgres.stop(stack.postgres)


def start_worker(stack: Stack, pool: str, api_url: str) -> str:
    """Start ``prefect worker start`` for ``pool`` in the background unless ours already runs."""
    pid = _running_pid(stack.worker_pid_file)
    if pid:
        return f"Worker already running (pid {pid}) on pool {pool!r}"
    stack.worker_pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_file = stack.log_file("worker")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **stack.env(), "PREFECT_API_URL": api_url}
    env["PREFECT_WORKER_QUERY_SECONDS"] = "2"  # picks up `make run`'s flow runs sooner
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", pool, "--type", "process"],
            cwd=stack.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop_worker() ends its flow runs too
        )
    stack.worker_pid_file.write_text(str(proc.pid))
    return f"Started process worker (pid {proc.pid}) on pool {pool!r}; log: {log_file}"


def stop_worker(stack: Stack, timeout: float = 20.0) -> str:
    """Stop the worker by its recorded PID (and its process group): TERM, then KILL."""
    pid_file = stack.worker_pid_file
    pid = _running_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return "worker: not running"
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)  # its own process group: the worker and the flow runs it started
        if _wait_gone(pid, timeout):
            break
    pid_file.unlink(missing_ok=True)
    return f"worker: stopped (pid {pid})"

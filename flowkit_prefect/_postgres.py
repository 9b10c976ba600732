"""A local PostgreSQL cluster for the Prefect server (``make run DB=postgres``).

``initdb`` once into ``<root>/data`` (trust authentication, loopback TCP only, no Unix socket),
``pg_ctl start`` on ``127.0.0.1:<port>``, a database ``prefect`` created if missing, and
``pg_ctl stop`` by the cluster's own postmaster PID file. PostgreSQL refuses to run as root: when
this process is root, the cluster runs as an unprivileged OS user (``postgres`` if it exists, else
``nobody``) through ``runuser`` and its folder is owned by that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flowkit_prefect.exceptions import ConfigurationError

DEFAULT_PORT = 5433
SUPERUSER = "postgres"  # the database role initdb creates (not the OS user)
DATABASE = "prefect"
START_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Cluster:
    """A cluster in ``root`` (``data/`` and ``postgres.log``) listening on 127.0.0.1:``port``."""

    root: Path
    port: int = DEFAULT_PORT

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        """What ``PREFECT_API_DATABASE_CONNECTION_URL`` is set to."""
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def postmaster_pid(self) -> int | None:
        """The running postmaster's PID (first line of ``postmaster.pid``), if it is alive."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        if Path("/proc/self").exists():
            try:
                if b"postgres" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return None  # a stale file and a reused PID
            except OSError:
                return None
        return pid


def _bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if not found:
        raise ConfigurationError(
            f"PostgreSQL's `{name}` was not found on PATH or in /usr/lib/postgresql/*/bin: "
            "install PostgreSQL (e.g. apt-get install postgresql-15), or use the default SQLite."
        )
    return found


def _os_user() -> str | None:
    """The OS user the cluster runs as: None for this process's own user (not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise ConfigurationError("PostgreSQL cannot run as root and no 'postgres' or 'nobody' user.")


def _as_cluster_user(args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    user = _os_user()
    command = ["runuser", "-u", user, "--", *args] if user else args
    return subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        start_new_session=True,  # a Ctrl-C in `make run` does not stop the cluster
    )


def _fail(what: str, done: subprocess.CompletedProcess[str], cluster: Cluster) -> None:
    if done.returncode == 0:
        return
    tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
    if cluster.log_file.exists():
        tail += ["--- " + str(cluster.log_file)]
        tail += cluster.log_file.read_text(errors="replace").strip().splitlines()[-15:]
    raise ConfigurationError(f"{what} failed (exit {done.returncode}):\n" + "\n".join(tail))


def _initdb(cluster: Cluster) -> None:
    cluster.data_dir.mkdir(parents=True, exist_ok=True)
    user = _os_user()
    if user:  # the folder and everything under it belong to the user PostgreSQL runs as
        entry = pwd.getpwnam(user)
        for path in [cluster.root, cluster.data_dir]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        probe = _as_cluster_user(["test", "-w", str(cluster.data_dir)])
        if probe.returncode != 0:
            raise ConfigurationError(
                f"PostgreSQL runs as the OS user {user!r} (not root), which cannot reach "
                f"{cluster.data_dir}: make its parent folders readable by others (chmod o+x)."
            )
    cluster.data_dir.chmod(0o700)
    done = _as_cluster_user(
        [
            _bin("initdb"),
            *("-D", str(cluster.data_dir), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8"),
            *("--no-sync", "--no-instructions"),
        ]
    )
    _fail("initdb", done, cluster)
    with open(cluster.data_dir / "postgresql.conf", "a") as conf:
        conf.write(
            "\n# flowkit-prefect: loopback TCP only, no Unix socket\n"
            "listen_addresses = '127.0.0.1'\n"
            "unix_socket_directories = ''\n"
            "max_connections = 200\n"
        )


def start(cluster: Cluster) -> str:
    """Initialise the cluster if needed, start it unless it runs, create the database."""
    if not (cluster.data_dir / "PG_VERSION").exists():
        _initdb(cluster)
        initialised = " (initialised)"
    else:
        initialised = ""
    pid = cluster.postmaster_pid()
    if pid is None:
        if not cluster.log_file.exists():
            cluster.log_file.touch()
        user = _os_user()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(cluster.log_file, entry.pw_uid, entry.pw_gid)
        done = _as_cluster_user(
            [
                _bin("pg_ctl"),
                *("-D", str(cluster.data_dir), "-l", str(cluster.log_file)),
                *("-o", f"-p {cluster.port}", "-w", "-t", str(START_TIMEOUT_SECONDS), "start"),
            ],
            timeout=START_TIMEOUT_SECONDS + 30,
        )
        _fail(f"pg_ctl start (port {cluster.port}; pick another with FLOWKIT_POSTGRES_PORT)",
              done, cluster)  # fmt: skip
        pid = cluster.postmaster_pid()
        state = f"Started PostgreSQL{initialised} (pid {pid})"
    else:
        state = f"PostgreSQL already running (pid {pid})"
    _create_database(cluster)
    return f"{state} on 127.0.0.1:{cluster.port}, database {DATABASE!r}; log: {cluster.log_file}"


def _create_database(cluster: Cluster) -> None:
    psql = [_bin("psql"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", SUPERUSER, "-tAq"]
    query = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"
    found = subprocess.run(
        [*psql, "-d", "postgres", "-c", query], capture_output=True, text=True, check=False
    )
    _fail("psql (looking for the prefect database)", found, cluster)
    if found.stdout.strip() != "1":
        made = subprocess.run(
            [*psql, "-d", "postgres", "-c", f"CREATE DATABASE {DATABASE}"],
            capture_output=True,
            text=True,
            check=False,
        )
        _fail("CREATE DATABASE", made, cluster)


def stop(cluster: Cluster, timeout: float = 60.0) -> str:
    """``pg_ctl stop -m fast`` when this folder's cluster runs."""
    pid = cluster.postmaster_pid()
    if pid is None:
        return "postgres: not running"
    done = _as_cluster_user(
        [
            _bin("pg_ctl"),
            "-D",
            str(cluster.data_dir),
            "-m",
            "fast",
            "-w",
            "-t",
            f"{timeout:.0f}",
            "stop",
        ],
        timeout=timeout + 30,
    )
    _fail("pg_ctl stop", done, cluster)
    return f"postgres: stopped (pid {pid})"

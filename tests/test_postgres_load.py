"""The local stack on PostgreSQL: `flowkit up --database postgres` / `flowkit down`, and 50
deployment runs created at once against a server on PostgreSQL with two process workers: every
run must complete (none lost, stuck or crashed) within a bounded time.

The clusters live in folders made under /tmp (PostgreSQL runs as an unprivileged OS user when the
tests run as root, and pytest's own tmp folders are private to root)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from flowkit_prefect import _postgres, _stack
from tests.helpers import free_port
from tests.load import burst, load_stack, prepare, server_log_errors

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))),
        reason="PostgreSQL (initdb, pg_ctl) is not installed",
    ),
]

FLOWKIT = str(Path(sys.executable).with_name("flowkit"))
RUNS = 50
BURST_TIMEOUT = 600.0  # for all 50 to be final: measured 4-6 min on 2 cores shared with other jobs


def _psql(cluster: _postgres.Cluster, query: str) -> str:
    done = subprocess.run(
        [
            *(_postgres._bin("psql"), "-h", "127.0.0.1", "-p", str(cluster.port)),
            *("-U", _postgres.SUPERUSER, "-d", _postgres.DATABASE, "-tAc", query),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def test_up_on_postgres_twice_then_down_stops_the_cluster() -> None:
    root = Path(tempfile.mkdtemp(prefix="flowkit-pg-up-"))
    root.chmod(0o755)  # reachable by the OS user PostgreSQL runs as
    port, pg_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"FLOWKIT_PORT": str(port), "FLOWKIT_POSTGRES_PORT": str(pg_port)})

    def flowkit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FLOWKIT, *args], cwd=root, env=env, capture_output=True, text=True, timeout=180
        )

    stack = _stack.Stack(root, port, "postgres", pg_port)
    try:
        first = flowkit("up", "--database", "postgres")
        assert first.returncode == 0, first.stdout + first.stderr
        match = re.search(r"Started PostgreSQL \(initialised\) \(pid (\d+)\)", first.stdout)
        assert match, first.stdout
        postmaster = int(match.group(1))
        assert "Started Prefect server" in first.stdout
        assert _stack.api_healthy(stack.api_url)
        # the server's tables are in PostgreSQL, and there is no SQLite database
        tables = "SELECT count(*) FROM pg_tables WHERE tablename = 'flow_run'"
        assert _psql(stack.postgres, tables) == "1"
        assert not list(stack.prefect_home.glob("*.db"))
        again = flowkit("up")  # FLOWKIT_DATABASE is not set: the running stack is reused as is
        env["FLOWKIT_DATABASE"] = "postgres"
        third = flowkit("up")
        assert again.returncode == 0 and "already running" in again.stdout, again.stderr
        assert f"PostgreSQL already running (pid {postmaster})" in third.stdout, third.stderr
    finally:
        down = flowkit("down")
        shutil.rmtree(root, ignore_errors=True) if down.returncode == 0 else None
    assert down.returncode == 0, down.stderr
    assert f"postgres: stopped (pid {postmaster})" in down.stdout, down.stdout
    assert stack.postgres.postmaster_pid() is None and not _stack.api_healthy(stack.api_url)
    assert _stack._port_free(pg_port)  # nothing listens on the cluster's port any more


@pytest.mark.timeout(900)
def test_fifty_runs_at_once_all_complete_on_postgres() -> None:
    with load_stack("postgres", free_port(), free_port(), workers=2, worker_limit=4) as running:
        prepare(running)  # the collection the rag-answer runs search
        result = burst(running, runs=RUNS, timeout=BURST_TIMEOUT)
        recorded = int(_psql(running.stack.postgres, "SELECT count(*) FROM flow_run"))
        log_errors = server_log_errors(running)
    print(
        f"{RUNS} runs: {dict(result.states)} in {result.wall:.0f} s "
        f"({result.runs_per_minute:.1f} runs/min); server log: {dict(log_errors)}"
    )
    assert not result.not_final, f"runs not final after {BURST_TIMEOUT:.0f} s: {result.not_final}"
    assert result.states == Counter({"Completed": RUNS}), result.failures
    assert recorded >= RUNS + 1  # the burst and the preparing ingest, in PostgreSQL
    assert not log_errors.get("database is locked")

"""Shared fixtures: one real Prefect server (``prefect_test_harness``) for the whole session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import STORE_ENGINES

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Loopback only: no telemetry from the servers the tests start.
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A real Prefect API (SQLite, subprocess server) shared by every test that needs one."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield str(PREFECT_API_URL.value())


@pytest.fixture
def harness(prefect_server: str) -> str:
    """Request this to run flows, tasks, blocks and artifacts against the session server."""
    return prefect_server


@pytest.fixture(params=STORE_ENGINES)
def store_engine(request: pytest.FixtureRequest) -> str:
    """Run the test once per store engine."""
    return request.param


@pytest.fixture(params=("edge", "local"))
def folder_engine(request: pytest.FixtureRequest) -> str:
    """Run the test once per engine of a store folder (tests that cross processes)."""
    return request.param


@pytest.fixture
def collection() -> str:
    """A collection name of this test's own."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A small folder of documents with known facts."""
    root = tmp_path / "corpus"
    (root / "guide").mkdir(parents=True)
    (root / "guide" / "herons.md").write_text(
        "# Herons\n\nThe grey heron named Kiri is the mascot of Heronworks. "
        "Herons hunt fish in shallow water.\n"
    )
    (root / "refunds.txt").write_text(
        "Customers can return any product within 45 days of delivery for a full refund.\n"
    )
    (root / "stations.csv").write_text("station,city\nperch-017,Tartu\nperch-042,Tallinn\n")
    return root

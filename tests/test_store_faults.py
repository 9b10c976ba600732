"""A Qdrant server URL that refuses connections or never answers: the retrieval tasks retry a
bounded number of times with backoff, then the run fails with our own error naming the URL.
Nothing listens on these loopback ports but the test's own silent socket."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client

from flowkit_prefect import LocalEmbedder, QdrantStore, rag_ingest, search_chunks
from flowkit_prefect.exceptions import StoreUnavailableError
from flowkit_prefect.testing import HashEmbeddings
from tests.helpers import free_port


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _task_attempts(flow_run_id: object, name: str) -> list[int]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(limit=200)
    return [t.run_count for t in runs if t.flow_run_id == flow_run_id and name in t.name]


def test_a_refused_url_is_retried_then_named(harness: str, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "a.md").write_text("Heronworks refunds take 45 days.\n")
    QdrantStore(location=url, timeout=2).save(name := f"refused-{uuid.uuid4().hex[:8]}")
    LocalEmbedder().save("test-minilm", overwrite=True)
    started = time.monotonic()
    state = rag_ingest(
        folder=str(tmp_path),
        collection="faults",
        qdrant_store=f"flowkit-qdrant-store/{name}",
        embedder="flowkit-local-embedder/test-minilm",
        return_state=True,
    )
    took = time.monotonic() - started
    assert state.is_failed()
    with pytest.raises(StoreUnavailableError, match=rf"Qdrant at {url} refused the connection"):
        state.result()
    attempts = _task_attempts(state.state_details.flow_run_id, "prepare-upserts")
    print(f"\nrefused: failed after {attempts} attempts in {took:.1f} s")
    assert attempts == [4]  # the first try and 3 retries with backoff, then it gives up
    assert took < 60


def test_a_silent_url_times_out_then_is_named(harness: str, silent_url: str) -> None:
    store = QdrantStore(location=silent_url, timeout=1)

    @flow
    def look_up() -> None:
        search_chunks.with_options(retries=1, retry_delay_seconds=0)(
            store, HashEmbeddings(), "faults", "refunds", top_k=2
        )

    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=r"did not answer within 1 s") as caught:
        look_up()
    assert silent_url in str(caught.value)
    assert time.monotonic() - started < 30

"""The in-process engine for real: the store operations it serves, how it fails, and moving a
qdrant-client local-mode folder onto it with nothing lost, and snapshots between engines."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.client_base import QdrantBase

from flowkit_prefect import ConfigurationError, QdrantStore, StoreBusyError
from flowkit_prefect.blocks.edge_engine import EdgeQdrant
from flowkit_prefect.models.bm25 import bm25_query
from flowkit_prefect.retrieval import store as qdrant_ops
from flowkit_prefect.retrieval.transfer import read_snapshot_header, restore_snapshot
from flowkit_prefect.retrieval.types import Chunk

TEXTS = [
    "Refunds are paid within seven business days.",
    "The grey heron hunts fish in shallow water.",
    "Code ZX-4711 means the flux capacitor is misaligned.",
    "Parcels leave our warehouse within two days.",
]


def _chunks() -> list[Chunk]:
    return [
        Chunk(
            chunk_id=f"00000000-0000-0000-0000-00000000000{i}",
            source=f"doc{i % 2}.md",
            chunk_index=i,
            text=text,
            doc_hash=f"h{i}",
            metadata={"lang": "en" if i < 3 else "de"},
        )
        for i, text in enumerate(TEXTS)
    ]


def _vectors() -> list[list[float]]:  # one axis per text: search for axis i finds text i
    return [[1.0 if j == i else 0.0 for j in range(8)] for i in range(len(TEXTS))]


def _fill(client: QdrantBase, indexes: tuple[str, ...] = ()) -> None:
    qdrant_ops.ensure_collection(client, "docs", 8, payload_indexes=indexes)
    qdrant_ops.upsert_chunks(client, "docs", _chunks(), _vectors(), "t")


def test_the_store_operations_on_the_in_process_engine(tmp_path: Path) -> None:
    store = QdrantStore(location=str(tmp_path / "store"), payload_indexes=["metadata.lang"])
    assert store.engine_name == "qdrant-edge (in-process)"
    client = store.get_client()
    try:
        assert isinstance(client, EdgeQdrant)
        qdrant_ops.ensure_collection(client, "docs", 8, payload_indexes=store.index_fields())
        qdrant_ops.upsert_chunks(client, "docs", _chunks(), _vectors(), "t")
        schema = client.get_collection("docs").payload_schema
        assert set(schema) == {"source", "scope", "metadata.lang"}
        qdrant_ops.ensure_collection(client, "docs", 8, payload_indexes=["metadata.kind"])
        schema = client.get_collection("docs").payload_schema  # an existing collection gains it
        assert set(schema) == {"source", "scope", "metadata.lang", "metadata.kind"}
        assert qdrant_ops.has_sparse(client, "docs")
        [dense] = qdrant_ops.search(client, "docs", _vectors()[2], top_k=1)
        assert dense.text == TEXTS[2] and dense.similarity == pytest.approx(1.0)
        sparse = qdrant_ops.search(client, "docs", None, sparse=bm25_query("ZX-4711"), top_k=1)
        assert sparse[0].text == TEXTS[2]
        fused = qdrant_ops.search(
            client, "docs", _vectors()[1], sparse=bm25_query("warehouse parcels"), top_k=2
        )
        assert {h.text for h in fused} == {TEXTS[1], TEXTS[3]}
        german = qdrant_ops.search(
            client, "docs", _vectors()[0], top_k=4, conditions={"metadata.lang": "de"}
        )
        assert [h.text for h in german] == [TEXTS[3]]
        assert qdrant_ops.stored_sources(client, "docs", "t") == {"doc0.md": 2, "doc1.md": 2}
        stale = qdrant_ops.delete_stale(client, "docs", "t", keep_ids=[_chunks()[0].chunk_id])
        assert stale == 3 and client.count("docs").count == 1
        with pytest.raises(ConfigurationError, match="cannot name a store folder"):
            client.collection_exists("../escape")
    finally:
        client.close()
    reopened = store.get_client()  # written, optimized, flushed: all there after a reopen
    try:
        assert reopened.count("docs").count == 1
    finally:
        reopened.close()


def test_a_second_opener_gets_a_clear_error(tmp_path: Path) -> None:
    first = EdgeQdrant(tmp_path / "store")
    code = (
        "import sys\n"
        "from flowkit_prefect.blocks.edge_engine import EdgeQdrant\n"
        "from flowkit_prefect import StoreBusyError\n"
        "try:\n    EdgeQdrant(sys.argv[1])\nexcept StoreBusyError as exc:\n    print(exc)\n"
    )
    try:
        with pytest.raises(StoreBusyError, match="open in another process"):
            EdgeQdrant(tmp_path / "store")
        shown = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "store")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "QdrantStore.session()" in shown.stdout, shown.stderr
    finally:
        first.close()


def test_a_local_mode_folder_keeps_working_then_migrates_with_nothing_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "store"
    legacy = QdrantClient(path=str(folder))
    _fill(legacy)
    legacy.close()

    store = QdrantStore(location=str(folder))
    assert store.is_legacy_folder() and store.engine_name == "qdrant-client local mode"
    client = store.get_client()
    try:
        assert client.count("docs").count == len(TEXTS)  # auto: served as it is
    finally:
        client.close()
    assert "flowkit store migrate" in caplog.text
    with pytest.raises(ConfigurationError, match="flowkit store migrate"):
        QdrantStore(location=str(folder), engine="edge").get_client()

    shown = subprocess.run(
        [sys.executable, "-m", "flowkit_prefect.cli", "store", "migrate", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"docs: {len(TEXTS)} points" in shown.stdout
    assert "Migrated 1 collections (4 points)" in shown.stdout
    assert list(folder.glob("local-mode-backup-*/meta.json"))  # kept until the user deletes it

    assert not store.is_legacy_folder() and store.engine_name == "qdrant-edge (in-process)"
    client = store.get_client()
    try:
        assert isinstance(client, EdgeQdrant)
        records, _ = client.scroll("docs", limit=10, with_payload=True, with_vectors=True)
        assert sorted(r.payload["text"] for r in records) == sorted(TEXTS)
        assert all(isinstance(r.vector["bm25"], models.SparseVector) for r in records)
        [hit] = qdrant_ops.search(client, "docs", None, sparse=bm25_query("heron"), top_k=1)
        assert hit.text == TEXTS[1]
    finally:
        client.close()

    again = subprocess.run(
        [sys.executable, "-m", "flowkit_prefect.cli", "store", "migrate", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 1 and "nothing to migrate" in again.stderr


def test_a_snapshot_moves_a_collection_between_engines(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    client = QdrantStore(location=str(folder)).get_client()
    _fill(client, indexes=("source", "scope"))
    client.close()
    snapshot = tmp_path / "docs.snapshot.jsonl.gz"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "flowkit_prefect.cli", "store", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )

    shown = cli("snapshot", "docs", str(snapshot), "--location", str(folder))
    assert shown.returncode == 0 and "Wrote 4 points" in shown.stdout, shown.stderr
    assert read_snapshot_header(snapshot)["points"] == len(TEXTS)

    restored = cli("restore", str(snapshot), "--location", str(folder), "--collection", "copy")
    assert restored.returncode == 0 and "Restored 4 points into 'copy'" in restored.stdout
    again = cli("restore", str(snapshot), "--location", str(folder), "--collection", "copy")
    assert again.returncode == 1 and "--recreate" in again.stderr  # nothing replaced unasked

    memory = QdrantClient(location=":memory:")  # another engine: the server client's API
    name, count = restore_snapshot(memory, snapshot, indexes=False)
    assert (name, count) == ("docs", len(TEXTS))
    [hit] = qdrant_ops.search(memory, "docs", _vectors()[1], sparse=bm25_query("heron"), top_k=1)
    assert hit.text == TEXTS[1]
    client = QdrantStore(location=str(folder)).get_client()
    try:
        a, _ = client.scroll("docs", limit=10, with_payload=True, with_vectors=True)
        b, _ = client.scroll("copy", limit=10, with_payload=True, with_vectors=True)
        assert sorted((r.id, r.payload["text"]) for r in a) == sorted(
            (r.id, r.payload["text"]) for r in b
        )
        assert set(client.get_collection("copy").payload_schema) == {"source", "scope"}
    finally:
        client.close()

    (tmp_path / "junk.gz").write_bytes(b"not a snapshot")
    bad = cli("restore", str(tmp_path / "junk.gz"), "--location", str(folder))
    assert bad.returncode == 1 and "not a flowkit snapshot" in bad.stderr


def test_a_collection_above_the_threshold_is_searched_through_its_graph(tmp_path: Path) -> None:
    """7,000 clustered 384-d points (above the ~6,500 indexing threshold): closing the writer
    builds the HNSW graph, and after a reopen searches through it find what exact search finds."""
    import numpy as np

    rng = np.random.default_rng(14)
    centres = rng.normal(size=(70, 384))
    points = centres[rng.integers(0, 70, 7000)] + rng.normal(scale=0.35, size=(7000, 384))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    chunks = [
        Chunk(chunk_id=str(uuid.UUID(int=i + 1)), source=f"s{i % 5}.md", chunk_index=i,
              text=f"point {i}", doc_hash="h")
        for i in range(len(points))
    ]  # fmt: skip
    store = QdrantStore(location=str(tmp_path / "store"))
    client = store.get_client()
    qdrant_ops.ensure_collection(client, "big", 384, payload_indexes=store.index_fields())
    for first in range(0, len(chunks), 1000):
        batch = slice(first, first + 1000)
        qdrant_ops.upsert_chunks(client, "big", chunks[batch], points[batch].tolist(), "t")
    before = client.get_collection("big").indexed_vectors_count or 0  # BM25's only: dense is exact
    client.close()

    client = store.get_client()
    try:
        assert (client.get_collection("big").indexed_vectors_count or 0) >= before + len(points)
        queries = points[rng.integers(0, len(points), 40)] + rng.normal(scale=0.2, size=(40, 384))
        exact = np.argsort(-(points @ queries.T), axis=0)[:10].T
        found = [
            [int(uuid.UUID(str(p.id))) - 1 for p in client.query_points(
                "big", query=q.tolist(), using=qdrant_ops.DENSE_VECTOR, limit=10
            ).points]
            for q in queries
        ]  # fmt: skip
        recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])
        assert recall >= 0.95, recall
    finally:
        client.close()

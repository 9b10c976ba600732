"""rag-ingest with its embedding batches on a local multi-process Dask cluster gives what the
thread runner gives: the same point ids and counts, and an answerable collection."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import pytest

from flowkit_prefect import ChunkingOptions, IngestRecord, LocalEmbedder, QdrantStore, rag_ingest

pytestmark = pytest.mark.dask
pytest.importorskip("prefect_dask")

WORDS = [
    "heron",
    "river",
    "refund",
    "delivery",
    "station",
    "sensor",
    "battery",
    "firmware",
    "warranty",
    "shipment",
    "invoice",
    "customer",
    "return",
    "policy",
    "calibration",
    "humidity",
    "pressure",
    "wind",
    "solar",
    "panel",
    "mast",
    "anchor",
    "cable",
    "mesh",
    "gateway",
    "uplink",
    "report",
    "alert",
    "threshold",
    "maintenance",
    "schedule",
    "spare",
    "part",
]


def _corpus(documents: int = 200, paragraphs: int = 12) -> list[IngestRecord]:
    """~2,400 chunks of 200 characters: distinct, deterministic text."""
    rng = random.Random(7)
    records = []
    for number in range(documents):
        text = "\n\n".join(
            f"Note {number}.{p}: " + " ".join(rng.choice(WORDS) for _ in range(24)) + "."
            for p in range(paragraphs)
        )
        records.append(IngestRecord(id=f"doc-{number:04d}", text=text, metadata={"n": number}))
    return records


def _point_ids(path: Path, collection: str) -> list[str]:
    client = QdrantStore(location=str(path)).get_client()
    try:
        points, ids, offset = [], [], None
        while True:
            points, offset = client.scroll(collection, limit=1000, offset=offset)
            ids += [str(p.id) for p in points]
            if offset is None:
                return sorted(ids)
    finally:
        client.close()


def test_dask_and_threads_ingest_the_same_points(harness: str, tmp_path: Path) -> None:
    from flowkit_prefect.flows.rag_ingest_dask import rag_ingest_dask

    name = f"dask-{uuid.uuid4().hex[:8]}"
    QdrantStore(location=str(tmp_path / "qdrant")).save(name)
    LocalEmbedder(threads=1).save(name)
    records = _corpus()
    common = {
        "records": records,
        "qdrant_store": f"flowkit-qdrant-store/{name}",
        "embedder": f"flowkit-local-embedder/{name}",
        "chunking": ChunkingOptions(chunk_size=200, chunk_overlap=20),
        "batch_size": 128,
        "scope": "dask-corpus",
    }
    started = time.perf_counter()
    threads = rag_ingest(collection="threads", **common)
    threads_seconds = time.perf_counter() - started
    started = time.perf_counter()
    dask = rag_ingest_dask(collection="dask", **common)
    dask_seconds = time.perf_counter() - started

    assert threads.chunks_written >= 2000
    assert dask.chunks_written == threads.chunks_written
    assert (dask.found, dask.ingested, dask.skipped) == (threads.found, threads.ingested, 0)
    ids = _point_ids(tmp_path / "qdrant", "threads")
    assert len(ids) == threads.chunks_written == len(set(ids))
    assert _point_ids(tmp_path / "qdrant", "dask") == ids
    print(
        f"\nrag-ingest, {threads.chunks_written} chunks: threads {threads_seconds:.1f} s "
        f"({threads.chunks_written / threads_seconds:.0f} chunks/s), Dask (2 processes) "
        f"{dask_seconds:.1f} s ({dask.chunks_written / dask_seconds:.0f} chunks/s)"
    )

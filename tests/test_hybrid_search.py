"""Hybrid search for real: BM25 sparse vectors beside MiniLM's dense ones in embedded Qdrant,
fused by reciprocal rank, through the public tasks inside flow runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import BaseDocumentCompressor, Document
from prefect import flow
from pydantic import Field
from qdrant_client import models

from flowkit_prefect import (
    ConfigurationError,
    LocalEmbedder,
    QdrantStore,
    chunk_documents,
    embed_and_upsert,
    load_documents,
    prepare_upserts,
    search_chunks,
)
from flowkit_prefect.models.bm25 import bm25_documents, bm25_query
from flowkit_prefect.retrieval import store as qdrant_ops
from flowkit_prefect.retrieval.types import Chunk
from tests.helpers import make_store

DOCS = {
    "refunds.md": "# Refunds\n\nRefunds are paid within seven business days after we receive "
    "the returned item.",
    "herons.md": "# Herons\n\nThe grey heron hunts fish in shallow water and nests in colonies.",
    "errors.md": "# Error codes\n\nCode ZX-4711 means the flux capacitor is misaligned; "
    "re-seat it and restart.",
    "shipping.md": "# Shipping\n\nParcels leave our warehouse within two days and arrive in "
    "three to five.",
}


@pytest.fixture
def indexed(harness: str, tmp_path: Path, store_engine: str) -> QdrantStore:
    """The four documents ingested into a store of this test's own, once per engine."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    store = make_store(store_engine, tmp_path / "qdrant")

    @flow
    def ingest() -> None:
        loaded = load_documents(folder=str(folder))
        chunks = chunk_documents(loaded.documents, scope="t")
        plan = prepare_upserts(store, "docs", chunks, dimension=384, scope="t")
        embed_and_upsert(store, LocalEmbedder().get_embeddings(), "docs", plan.to_write, scope="t")

    ingest()
    return store


def _search(store: QdrantStore, query: str, **kwargs: object) -> list:
    @flow
    def ask() -> list:
        return search_chunks(store, LocalEmbedder().get_embeddings(), "docs", query, **kwargs)

    return ask()


def test_bm25_vectors_are_offline_and_stemmed() -> None:
    [doc] = bm25_documents(["Herons hunting fish"])
    query = bm25_query("heron hunts")
    assert len(doc[0]) == 3 and all(v > 0 for v in doc[1])
    assert set(query[0]) <= set(doc[0]) and len(query[0]) == 2  # stems match: heron, hunt


def test_new_collections_store_sparse_vectors_and_search_is_hybrid(indexed: QdrantStore) -> None:
    with indexed.session() as client:
        params = client.get_collection("docs").config.params
        assert params.sparse_vectors is not None
        assert params.sparse_vectors[qdrant_ops.SPARSE_VECTOR].modifier == models.Modifier.IDF
        [point], _ = client.scroll("docs", limit=1, with_vectors=True)
        assert isinstance(point.vector, dict) and qdrant_ops.SPARSE_VECTOR in point.vector

    # a rare code: BM25 pins it, and the fused ranking keeps it first
    default = _search(indexed, "what does ZX-4711 mean", top_k=3)
    hybrid = _search(indexed, "what does ZX-4711 mean", top_k=3, mode="hybrid")
    sparse = _search(indexed, "what does ZX-4711 mean", top_k=3, mode="sparse")
    dense = _search(indexed, "what does ZX-4711 mean", top_k=3, mode="dense")
    assert [h.chunk_id for h in default] == [h.chunk_id for h in hybrid]
    assert hybrid[0].source == sparse[0].source == "errors.md"
    assert [h.source for h in sparse] == ["errors.md"]  # only documents with a query term
    # every mode with a dense query reports the cosine similarity relevance thresholds use
    assert dense[0].similarity == pytest.approx(dense[0].score)
    by_id = {h.chunk_id: h.similarity for h in dense}
    for hit in hybrid:
        assert hit.similarity == pytest.approx(by_id[hit.chunk_id], abs=1e-4)
    assert all(h.similarity is None for h in sparse)


def test_hybrid_search_applies_the_filter_to_both_sides(indexed: QdrantStore) -> None:
    hits = _search(indexed, "ZX-4711 heron", top_k=4, filter={"source": "herons.md"})
    assert [h.source for h in hits] == ["herons.md"]
    semantic = _search(indexed, "how long until my money comes back", top_k=1)
    assert semantic[0].source == "refunds.md"  # no shared keyword: the dense side finds it


def test_dense_only_collections_keep_working_and_say_how_to_add_sparse(
    harness: str, tmp_path: Path, store_engine: str
) -> None:
    store = make_store(store_engine, tmp_path / "old")
    embeddings = LocalEmbedder().get_embeddings()
    chunk = Chunk(
        chunk_id="00000000-0000-0000-0000-000000000001",
        source="old.md",
        chunk_index=0,
        text="Herons hunt fish.",
        doc_hash="h",
    )
    with store.session() as client:  # a collection from before hybrid search: dense only
        client.create_collection(
            "old",
            vectors_config={
                "dense": models.VectorParams(size=384, distance=models.Distance.COSINE)
            },
        )
        qdrant_ops.upsert_chunks(
            client, "old", [chunk], embeddings.embed_documents([chunk.text]), "t"
        )

    @flow
    def ask(mode: str | None) -> list:
        return search_chunks(store, embeddings, "old", "herons", mode=mode)

    [hit] = ask(None)
    assert hit.source == "old.md" and hit.similarity == pytest.approx(hit.score)
    with pytest.raises(ConfigurationError, match="recreate_collection=True"):
        ask("hybrid")
    with pytest.raises(ConfigurationError, match="not one of hybrid, dense, sparse"):
        ask("keyword")
    with pytest.raises(ConfigurationError, match="does not exist"):
        search_chunks.fn(store, embeddings, "missing", "herons")


def test_chunks_are_indexed_with_their_heading_path(harness: str, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    filler = "Our staff answer every message within a day. " * 20  # a chunk per section
    (folder / "handbook.md").write_text(
        f"# Heronworks handbook\n\n{filler}\n\n## Refund policy\n\n{filler}\n\n"
        "### Damaged parcels\n\nYou get the money back within seven business days.\n"
    )
    store = QdrantStore(location=str(tmp_path / "qdrant"))

    @flow
    def ingest_and_ask() -> tuple[list[Chunk], list]:
        loaded = load_documents(folder=str(folder))
        chunks = chunk_documents(loaded.documents, scope="t")
        plan = prepare_upserts(store, "docs", chunks, dimension=384, scope="t")
        embeddings = LocalEmbedder().get_embeddings()
        embed_and_upsert(store, embeddings, "docs", plan.to_write, scope="t")
        return chunks, search_chunks(store, embeddings, "docs", "refund damaged", mode="sparse")

    chunks, hits = ingest_and_ask()
    last = chunks[-1]
    assert last.context == "Heronworks handbook > Refund policy > Damaged parcels"
    assert "refund" not in last.text.lower()
    assert hits[0].chunk_id == last.chunk_id  # found by its headings' words
    assert hits[0].text == last.text and hits[0].context == last.context  # stored without them
    assert chunks[0].context == "Heronworks handbook"


class ReverseReranker(BaseDocumentCompressor):
    """A deterministic reranker: the candidates in reverse order, scored by position."""

    seen: list[int] = Field(default_factory=list)

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Any = None
    ) -> Sequence[Document]:
        self.seen.append(len(documents))
        ranked = list(reversed(documents))
        return [
            Document(d.page_content, metadata={**d.metadata, "relevance_score": 1 / (i + 1)})
            for i, d in enumerate(ranked)
        ]


class LossyReranker(BaseDocumentCompressor):
    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Any = None
    ) -> Sequence[Document]:
        return [Document(d.page_content) for d in documents]


def test_a_reranker_reorders_the_fused_candidates(indexed: QdrantStore) -> None:
    reranker = ReverseReranker(seen=[])
    plain = _search(indexed, "heron fish", top_k=4)
    reranked = _search(indexed, "heron fish", top_k=2, reranker=reranker, candidates=4)
    assert reranker.seen == [4]  # it saw the candidates, not just top_k
    assert [h.chunk_id for h in reranked] == [h.chunk_id for h in reversed(plain)][:2]
    assert [h.score for h in reranked] == [1.0, 0.5]
    with pytest.raises(ConfigurationError, match="keep documents' metadata"):
        _search(indexed, "heron fish", reranker=LossyReranker())
    with pytest.raises(ConfigurationError, match="candidates"):
        _search(indexed, "heron fish", top_k=5, candidates=2, reranker=reranker)

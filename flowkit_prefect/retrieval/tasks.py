"""Prefect tasks for retrieval, composable in your own flows.

Example:
    ```python
    from prefect import flow
    from flowkit_prefect import LocalEmbedder, QdrantStore
    from flowkit_prefect.retrieval.tasks import (
        chunk_documents, embed_and_upsert, load_documents, prepare_upserts, search_chunks,
    )

    @flow
    def index_and_search(folder: str, question: str):
        store, embeddings = QdrantStore(location="./qdrant"), LocalEmbedder().get_embeddings()
        loaded = load_documents(folder=folder)
        chunks = chunk_documents(loaded.documents, scope=folder)
        plan = prepare_upserts(store, "docs", chunks, dimension=384)
        embed_and_upsert(store, embeddings, "docs", plan.to_write, scope=folder)
        return search_chunks(store, embeddings, "docs", question)
    ```
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.documents import BaseDocumentCompressor
from langchain_core.embeddings import Embeddings
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from pydantic import BaseModel, Field

from flowkit_prefect._logging import run_logger
from flowkit_prefect._retry import retry_on_transient
from flowkit_prefect.blocks.embedders import EmbedderBlock
from flowkit_prefect.blocks.qdrant import QdrantStore
from flowkit_prefect.exceptions import ConfigurationError
from flowkit_prefect.models.bm25 import bm25_query
from flowkit_prefect.retrieval import store as qdrant_ops
from flowkit_prefect.retrieval.chunking import ChunkingOptions, split_documents
from flowkit_prefect.retrieval.loaders import DEFAULT_MAX_FILE_BYTES, load_folder, load_records
from flowkit_prefect.retrieval.rerank import rerank
from flowkit_prefect.retrieval.types import (
    Chunk,
    IngestRecord,
    LoadResult,
    SearchHit,
    SearchMode,
    SourceDocument,
)

# Writes are idempotent (deterministic ids), so re-running is the resume path; the inputs
# (thousands of chunks, blocks, clients) are not worth hashing into cache keys.
_TRANSIENT_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_on_transient,
}


class UpsertPlan(BaseModel):
    """What an ingest must write: the chunks of new or changed documents only."""

    to_write: list[Chunk] = Field(default_factory=list)
    unchanged_sources: list[str] = Field(default_factory=list)
    changed_sources: list[str] = Field(default_factory=list)
    new_sources: list[str] = Field(default_factory=list)
    collection_created: bool = False


@task(name="load-documents", cache_policy=NO_CACHE)
def load_documents(
    folder: str | None = None,
    records: list[IngestRecord] | list[dict[str, Any]] | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    text_fields: tuple[str, ...] = ("text", "content", "body"),
    include_hidden: bool = False,
) -> LoadResult:
    """Load documents from a folder or from inline records; skipped inputs carry a reason."""
    if (folder is None) == (records is None):
        raise ConfigurationError("Pass exactly one of `folder` or `records` to load documents.")
    result = (
        load_folder(
            folder,
            max_file_bytes=max_file_bytes,
            text_fields=text_fields,
            include_hidden=include_hidden,
        )
        if folder is not None
        else load_records(records or [])
    )
    logger = run_logger("flowkit.retrieval")
    logger.info(
        "Found %d inputs: %d documents, %d skipped",
        result.found,
        len(result.documents),
        len(result.skipped),
    )
    for skipped in result.skipped:
        logger.warning("Skipped %s: %s", skipped.source, skipped.reason)
    return result


@task(name="chunk-documents", cache_policy=NO_CACHE)
def chunk_documents(
    documents: list[SourceDocument], options: ChunkingOptions | None = None, scope: str = ""
) -> list[Chunk]:
    """Split documents into chunks whose ids derive from scope, source and content."""
    chunks = split_documents(documents, options or ChunkingOptions(), scope)
    run_logger("flowkit.retrieval").info(
        "Split %d documents into %d chunks", len(documents), len(chunks)
    )
    return chunks


@task(name="prepare-upserts", cache_policy=NO_CACHE, **_TRANSIENT_RETRIES)
def prepare_upserts(
    store: QdrantStore,
    collection: str,
    chunks: list[Chunk],
    dimension: int,
    scope: str = "",
    recreate_collection: bool = False,
) -> UpsertPlan:
    """Make sure the collection exists, then keep only chunks of new or changed documents."""
    with store.session() as client:
        created = qdrant_ops.ensure_collection(
            client,
            collection,
            dimension,
            recreate=recreate_collection,
            payload_indexes=store.index_fields(),
        )
        stored = (
            {}
            if created
            else qdrant_ops.existing_doc_hashes(client, collection, [c.chunk_id for c in chunks])
        )
        sources_present: set[str] = set()
        if not created and any(stored.get(c.chunk_id) != c.doc_hash for c in chunks):
            sources_present = set(qdrant_ops.stored_sources(client, collection, scope))
    to_write, unchanged, changed = qdrant_ops.plan_changes(chunks, stored)
    plan = UpsertPlan(
        to_write=to_write,
        unchanged_sources=sorted(unchanged),
        changed_sources=sorted(changed & sources_present),
        new_sources=sorted(changed - sources_present),
        collection_created=created,
    )
    run_logger("flowkit.retrieval").info(
        "Collection %r: %d chunks to write (%d new, %d changed, %d unchanged documents)",
        collection,
        len(to_write),
        len(plan.new_sources),
        len(plan.changed_sources),
        len(plan.unchanged_sources),
    )
    return plan


@task(name="embed-and-upsert", cache_policy=NO_CACHE, **_TRANSIENT_RETRIES)
def embed_and_upsert(
    store: QdrantStore,
    embeddings: Embeddings,
    collection: str,
    chunks: list[Chunk],
    scope: str = "",
) -> int:
    """Embed a batch of chunks and upsert them; returns how many points were written."""
    if not chunks:
        return 0
    vectors = embeddings.embed_documents([chunk.indexed_text for chunk in chunks])
    return _write(store, collection, chunks, vectors, scope)


def _write(
    store: QdrantStore,
    collection: str,
    chunks: list[Chunk],
    vectors: list[list[float]],
    scope: str,
) -> int:
    """Upsert embedded chunks through the store's session; the one write of both tasks."""
    with store.session() as client:
        written = qdrant_ops.upsert_chunks(client, collection, chunks, vectors, scope)
    run_logger("flowkit.retrieval").debug("Upserted %d chunks into %r", written, collection)
    return written


@task(name="embed-chunks", cache_policy=NO_CACHE, **_TRANSIENT_RETRIES)
def embed_chunks(embedder: EmbedderBlock | Embeddings, texts: list[str]) -> list[list[float]]:
    """Embed a batch of chunk texts: no store access, so it runs wherever the flow's task runner
    puts it (a thread, a Dask worker process). Give the embedder *block* to distribute the
    work: a block is small to ship, and each process builds (and caches) its model once."""
    if not texts:
        return []
    embeddings = embedder.get_embeddings() if isinstance(embedder, EmbedderBlock) else embedder
    return embeddings.embed_documents(texts)


@task(name="upsert-chunks", cache_policy=NO_CACHE, **_TRANSIENT_RETRIES)
def upsert_chunks(
    store: QdrantStore,
    collection: str,
    chunks: list[Chunk],
    vectors: list[list[float]],
    scope: str = "",
) -> int:
    """Upsert already-embedded chunks (idempotent: deterministic point ids); run it in the
    process that holds the store session (an embedded store is one process at a time)."""
    if len(chunks) != len(vectors):
        raise ConfigurationError(
            f"{len(chunks)} chunks but {len(vectors)} vectors: embed exactly one vector per chunk."
        )
    if not chunks:
        return 0
    return _write(store, collection, chunks, vectors, scope)


@task(name="delete-stale-chunks", cache_policy=NO_CACHE, **_TRANSIENT_RETRIES)
def delete_stale_chunks(
    store: QdrantStore,
    collection: str,
    scope: str,
    current_chunk_ids: list[str],
    changed_sources: list[str],
    delete_missing: bool = False,
    current_sources: list[str] | None = None,
) -> dict[str, int]:
    """Remove the old chunks of changed documents and, with ``delete_missing``, every chunk of
    a document no longer in the corpus. Returns ``{source: chunks deleted}``."""
    deleted: dict[str, int] = {}
    with store.session() as client:
        if changed_sources:
            count = qdrant_ops.delete_stale(
                client, collection, scope, current_chunk_ids, sources=changed_sources
            )
            if count:
                deleted["(old chunks of changed documents)"] = count
        if delete_missing:
            current = set(current_sources or [])
            stored = qdrant_ops.stored_sources(client, collection, scope)
            gone = {source: n for source, n in stored.items() if source not in current}
            if gone:
                qdrant_ops.delete_stale(client, collection, scope, [], sources=list(gone))
                deleted.update(gone)
    if deleted:
        run_logger("flowkit.retrieval").info("Deleted stale chunks: %s", deleted)
    return deleted


@task(name="search-chunks", cache_policy=NO_CACHE, **_TRANSIENT_RETRIES)
def search_chunks(
    store: QdrantStore,
    embeddings: Embeddings,
    collection: str,
    query: str,
    top_k: int = 5,
    filter: Mapping[str, Any] | None = None,
    score_threshold: float | None = None,
    mode: SearchMode | None = None,
    reranker: BaseDocumentCompressor | None = None,
    candidates: int | None = None,
) -> list[SearchHit]:
    """Search: the ``top_k`` chunks for ``query`` that match ``filter``.

    ``mode`` ``hybrid`` fuses semantic (dense) and BM25 keyword (sparse) results by reciprocal
    rank; ``dense`` and ``sparse`` use one of them. None: hybrid where the collection has sparse
    vectors (every collection created since they exist), dense elsewhere. ``filter`` maps
    payload keys (``source``, ``scope``, ``metadata.<key>``) to a value or a list of values.

    ``reranker``, any LangChain document compressor (a cross-encoder, Cohere's, Flashrank's),
    reorders ``candidates`` hits (default ``4 * top_k``) and the best ``top_k`` are returned.
    """
    if not query or not query.strip():
        raise ConfigurationError("The search query is empty.")
    if top_k < 1:
        raise ConfigurationError(f"top_k must be at least 1, got {top_k}.")
    if candidates is not None and candidates < top_k:
        raise ConfigurationError(f"candidates ({candidates}) must be at least top_k ({top_k}).")
    if mode is not None and mode not in qdrant_ops.SEARCH_MODES:
        raise ConfigurationError(
            f"Search mode {mode!r} is not one of {', '.join(qdrant_ops.SEARCH_MODES)}."
        )
    logger = run_logger("flowkit.retrieval")
    vector = embeddings.embed_query(query) if mode != "sparse" else None  # outside the session
    with store.session() as client:
        sparse_stored = qdrant_ops.has_sparse(client, collection)
        if mode in ("hybrid", "sparse") and not sparse_stored:
            raise ConfigurationError(
                f"Collection {collection!r} has no BM25 sparse vectors (it was created before "
                f"hybrid search), so mode={mode!r} cannot run. Re-ingest it with "
                "recreate_collection=True to add them, or search with mode='dense'."
            )
        chosen = mode or ("hybrid" if sparse_stored else "dense")
        if chosen == "dense" and mode is None:
            logger.info(
                "Collection %r has no sparse vectors: dense search only (re-ingest with "
                "recreate_collection=True for hybrid search)",
                collection,
            )
        hits = qdrant_ops.search(
            client,
            collection,
            vector,
            sparse=bm25_query(query) if chosen != "dense" else None,
            top_k=top_k if reranker is None else candidates or 4 * top_k,
            conditions=filter,
            score_threshold=score_threshold,
        )
    if reranker is not None:
        hits = rerank(reranker, query, hits, top_k)
    logger.info("Found %d chunks for the query in %r (%s search)", len(hits), collection, chosen)
    return hits

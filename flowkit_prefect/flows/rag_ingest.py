"""The ``rag-ingest`` template: folder or records → load → chunk → embed → idempotent upsert."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast
from uuid import UUID

from prefect import flow
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import opaque
from pydantic import Field

from flowkit_prefect._blockref import resolve_block
from flowkit_prefect.blocks.embedders import EmbedderBlock
from flowkit_prefect.blocks.qdrant import QdrantStore
from flowkit_prefect.exceptions import ConfigurationError
from flowkit_prefect.flows._document_checks import DocumentChecks, check_documents
from flowkit_prefect.flows._lineage import collection_asset, corpus_asset, materialize
from flowkit_prefect.flows._params import (
    DEFAULT_COLLECTION,
    DEFAULT_EMBEDDER,
    DEFAULT_QDRANT_STORE,
    BlockRef,
    CollectionName,
)
from flowkit_prefect.retrieval.chunking import ChunkingOptions
from flowkit_prefect.retrieval.loaders import DEFAULT_MAX_FILE_BYTES
from flowkit_prefect.retrieval.store import count_points
from flowkit_prefect.retrieval.tasks import (
    chunk_documents,
    delete_stale_chunks,
    embed_chunks,
    load_documents,
    prepare_upserts,
    upsert_chunks,
)
from flowkit_prefect.retrieval.types import Chunk, IngestRecord, IngestSummary, SourceReport

T = TypeVar("T")


def _opaque(value: T) -> T:
    """``opaque(value)``, typed as the value the task receives once Prefect unwraps it."""
    return cast(T, opaque(value))


SUMMARY_ARTIFACT_KEY = "rag-ingest-summary"
PROGRESS_ARTIFACT_KEY = "rag-ingest-progress"


class _Progress:
    """The run's progress artifact, updated in steps of at least 5 % (one API call each)."""

    def __init__(self, description: str) -> None:
        created = create_progress_artifact(0.0, key=PROGRESS_ARTIFACT_KEY, description=description)
        self._id = cast(UUID, created)  # the sync call returns the id, not a coroutine
        self._shown = 0.0

    def update(self, percent: float) -> None:
        if percent >= 100.0 or percent - self._shown >= 5.0:
            update_progress_artifact(self._id, min(percent, 100.0))
            self._shown = percent


def _summary(
    collection: str,
    found: int,
    skipped: list[SourceReport],
    chunk_counts: dict[str, int],
    unchanged: set[str],
    changed: set[str],
    written: int,
    deleted: dict[str, int],
) -> IngestSummary:
    rows: list[SourceReport] = []
    for source, count in sorted(chunk_counts.items()):
        status = (
            "unchanged" if source in unchanged else "updated" if source in changed else "ingested"
        )
        rows.append(SourceReport(source=source, status=status, chunks=count))
    rows.extend(skipped)
    rows.extend(
        SourceReport(source=s, status="deleted", chunks=n, reason="no longer in the corpus")
        for s, n in sorted(deleted.items())
        if not s.startswith("(")
    )
    return IngestSummary(
        collection=collection,
        found=found,
        ingested=len(chunk_counts),
        skipped=len(skipped),
        chunks_written=written,
        chunks_deleted=sum(deleted.values()),
        sources=rows,
    )


@flow(name="rag-ingest", log_prints=True, persist_result=True)
def rag_ingest(
    folder: str | None = None,
    records: list[IngestRecord] | None = None,
    collection: CollectionName = DEFAULT_COLLECTION,
    qdrant_store: BlockRef = DEFAULT_QDRANT_STORE,
    embedder: BlockRef = DEFAULT_EMBEDDER,
    chunking: ChunkingOptions | None = None,
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 256,
    delete_missing: bool = False,
    recreate_collection: bool = False,
    max_file_bytes: Annotated[int, Field(ge=1)] = DEFAULT_MAX_FILE_BYTES,
    scope: str | None = None,
    document_checks: DocumentChecks | None = None,
    include_hidden: bool = False,
) -> IngestSummary:
    """Ingest documents into Qdrant: load, chunk, embed and upsert with deterministic ids.

    Re-running on an unchanged corpus writes nothing; a changed document's chunks are
    replaced; every input is accounted for in the ``rag-ingest-summary`` artifact.

    Args:
        folder: Folder of documents, relative to the project folder (or absolute).
        records: Documents given inline instead of a folder: id, text, metadata.
        collection: Qdrant collection to write to; created on first use.
        qdrant_store: Qdrant store block, as '<block-type-slug>/<name>'.
        embedder: Embedder block, as '<block-type-slug>/<name>'. One collection, one embedder.
        chunking: Chunk size and overlap in characters (default 800 / 100).
        batch_size: Chunks embedded and upserted per task.
        delete_missing: Delete the chunks of documents no longer in the folder or records.
        recreate_collection: Drop and rebuild the collection, e.g. after changing the embedder.
        max_file_bytes: Larger files are skipped (and reported).
        scope: Names this corpus inside the collection; default: the folder path or 'records'.
        document_checks: The document checkpoint before embedding: text length bounds and
            required metadata; failing documents are quarantined and reported, not embedded.
        include_hidden: Also load hidden files and folders (names starting with a dot); by
            default they are skipped and reported.
    """
    logger = get_run_logger()
    if (folder is None) == (records is None):
        raise ConfigurationError("rag-ingest needs exactly one of `folder` or `records`.")
    store = resolve_block(qdrant_store, QdrantStore)
    embedder_block = resolve_block(embedder, EmbedderBlock)
    corpus_scope = scope or (
        Path(folder).as_posix().rstrip("/") if folder is not None else "records"
    )
    progress = _Progress(f"Ingesting into {collection}")

    loaded = load_documents(
        folder=folder,
        records=records,
        max_file_bytes=max_file_bytes,
        include_hidden=include_hidden,
    )
    documents, quarantined = check_documents(loaded.documents, document_checks or DocumentChecks())
    # opaque(): Prefect need not walk thousands of chunks looking for upstream futures.
    chunks = chunk_documents(_opaque(documents), chunking or ChunkingOptions(), corpus_scope)
    progress.update(5.0)
    # One store session for the run: an embedded store is opened (and locked) once, not per task.
    with store.session() as client:
        plan = prepare_upserts(
            store,
            collection,
            _opaque(chunks),
            embedder_block.dimension(),
            corpus_scope,
            recreate_collection,
        )
        progress.update(10.0)
        written = _embed_and_write(
            store, embedder_block, collection, plan.to_write, corpus_scope, batch_size, progress
        )
        deleted = delete_stale_chunks(
            store,
            collection,
            corpus_scope,
            _opaque([c.chunk_id for c in plan.to_write]),
            plan.changed_sources,
            delete_missing,
            # a quarantined document keeps the chunks of its last good version
            _opaque(sorted({c.source for c in chunks} | {q.source for q in quarantined})),
        )
        points = count_points(client, collection)
    progress.update(100.0)

    chunk_counts: dict[str, int] = {}
    for chunk in chunks:
        chunk_counts[chunk.source] = chunk_counts.get(chunk.source, 0) + 1
    skipped_rows = [
        SourceReport(source=s.source, status="skipped", reason=s.reason)
        for s in [*loaded.skipped, *quarantined]
    ]
    # A document that produced no chunk cannot be found later: account for it as skipped.
    for document in documents:
        if document.source not in chunk_counts:
            skipped_rows.append(
                SourceReport(source=document.source, status="skipped", reason="no text to chunk")
            )
    summary = _summary(
        collection,
        loaded.found,
        skipped_rows,
        chunk_counts,
        set(plan.unchanged_sources),
        set(plan.changed_sources),
        written,
        deleted,
    ).model_copy(update={"store_engine": store.engine_name})
    _publish(summary, embedder_block.model_label)
    _materialize_collection(store, folder, corpus_scope, summary, points, embedder_block)
    logger.info(
        "Ingest into %r (%s): %d found, %d ingested, %d skipped, %d chunks written, %d deleted",
        collection,
        summary.store_engine,
        summary.found,
        summary.ingested,
        summary.skipped,
        summary.chunks_written,
        summary.chunks_deleted,
    )
    return summary


def _materialize_collection(
    store: QdrantStore,
    folder: str | None,
    scope: str,
    summary: IngestSummary,
    points: int,
    embedder: EmbedderBlock,
) -> None:
    """The collection as a Prefect asset made from the corpus, with what this run changed."""
    asset = collection_asset(store, summary.collection)
    metadata = {
        "points": points,
        "chunks_written": summary.chunks_written,
        "chunks_deleted": summary.chunks_deleted,
        "documents_ingested": summary.ingested,
        "documents_skipped": summary.skipped,
        "embedder": embedder.model_label,
        "scope": scope,
        "store_engine": summary.store_engine,
    }
    materialize(
        [asset], [corpus_asset(folder, scope)], {asset.key: metadata}, "materialize-collection"
    )


EMBED_BATCHES_IN_FLIGHT = 4
"""Embedding batches submitted ahead of the upserts on a distributed task runner (Dask, Ray):
enough to keep a few workers busy while the flow process writes the finished ones, few enough
to bound memory. On the default thread-pool runner the embedder block says how many pay."""


def _batches_in_flight(embedder: EmbedderBlock) -> int:
    runner = getattr(FlowRunContext.get(), "task_runner", None)
    if runner is None or isinstance(runner, ThreadPoolTaskRunner):  # in this process
        return embedder.concurrent_batches
    return EMBED_BATCHES_IN_FLIGHT


def _embed_and_write(
    store: QdrantStore,
    embedder: EmbedderBlock,
    collection: str,
    chunks: list[Chunk],
    scope: str,
    batch_size: int,
    progress: _Progress,
) -> int:
    """Embed batches on the flow's task runner (threads by default, Dask processes when the
    deployment picks it) and upsert each in this process, which holds the store session."""
    batches = [chunks[start : start + batch_size] for start in range(0, len(chunks), batch_size)]
    in_flight: deque[tuple[list[Chunk], PrefectFuture[list[list[float]]]]] = deque()
    written = 0
    ahead = _batches_in_flight(embedder)
    for position, batch in enumerate(batches):
        texts = [chunk.indexed_text for chunk in batch]
        named = embed_chunks.with_options(task_run_name=f"embed-chunks [{position + 1}]")
        in_flight.append((batch, named.submit(embedder, texts)))
        while in_flight and (len(in_flight) >= ahead or position == len(batches) - 1):
            done, future = in_flight.popleft()
            written += upsert_chunks(
                store, collection, _opaque(done), _opaque(future.result()), scope
            )
            progress.update(10.0 + 85.0 * written / len(chunks))
    return written


def _publish(summary: IngestSummary, embedder_label: str) -> None:
    rows: list[dict[str, Any]] = [
        {"source": r.source, "status": r.status, "chunks": r.chunks, "reason": r.reason}
        for r in summary.sources
    ]
    create_table_artifact(
        rows,
        key=SUMMARY_ARTIFACT_KEY,
        description=(
            f"Ingest into `{summary.collection}` ({embedder_label}; store: "
            f"{summary.store_engine}): {summary.found} found, "
            f"{summary.ingested} ingested, {summary.skipped} skipped, "
            f"{summary.chunks_written} chunks written, {summary.chunks_deleted} deleted"
        ),
    )
    if summary.skipped:
        lines = [f"- `{r.source}`: {r.reason}" for r in summary.sources if r.status == "skipped"]
        create_markdown_artifact(
            f"### Skipped inputs ({summary.skipped})\n\n" + "\n".join(lines),
            key="rag-ingest-skipped",
            description=f"Inputs of flow run {flow_run.get_name()} that were not ingested",
        )

"""rag-ingest for real: Prefect server, embedded Qdrant, the offline MiniLM embedder."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from prefect import flow
from prefect.artifacts import Artifact
from qdrant_client import models

from flowkit_prefect import (
    ChunkingOptions,
    CollectionDimensionError,
    ConfigurationError,
    LocalEmbedder,
    OpenAIEmbedder,
    QdrantStore,
    SourceNotFoundError,
    rag_ingest,
    search_chunks,
)
from flowkit_prefect.flows._document_checks import DocumentChecks
from flowkit_prefect.retrieval.tasks import (
    chunk_documents,
    embed_and_upsert,
    load_documents,
    prepare_upserts,
)
from flowkit_prefect.testing import HashEmbeddings


@pytest.fixture
def blocks(harness: str, tmp_path: Path, folder_engine: str) -> dict[str, str]:
    """Saved blocks for an embedded store in this test's folder (once per folder engine) and
    the offline embedder."""
    name = tmp_path.name.replace("_", "-").lower()[-40:]
    QdrantStore(location=str(tmp_path / "qdrant"), engine=folder_engine).save(name, overwrite=True)
    LocalEmbedder().save("test-minilm", overwrite=True)
    return {
        "qdrant_store": f"flowkit-qdrant-store/{name}",
        "embedder": "flowkit-local-embedder/test-minilm",
        "path": str(tmp_path / "qdrant"),
        "engine": folder_engine,
    }


def _points_by_source(blocks: dict[str, str], collection: str) -> dict[str, int]:
    client = QdrantStore(location=blocks["path"], engine=blocks["engine"]).get_client()
    try:
        counts: dict[str, int] = {}
        records, _ = client.scroll(collection, limit=10_000, with_payload=["source"])
        for record in records:
            source = record.payload["source"]
            counts[source] = counts.get(source, 0) + 1
        return counts
    finally:
        client.close()


def test_ingest_is_idempotent_and_tracks_changes(
    corpus: Path, blocks: dict[str, str], collection: str
) -> None:
    params = {
        "folder": str(corpus),
        "collection": collection,
        "qdrant_store": blocks["qdrant_store"],
        "embedder": blocks["embedder"],
        "chunking": ChunkingOptions(chunk_size=60, chunk_overlap=0),
    }
    first = rag_ingest(**params)
    assert first.found == 4 and first.ingested == 4 and first.skipped == 0 and first.accounted
    assert first.chunks_written > 4
    stored = _points_by_source(blocks, collection)
    assert sum(stored.values()) == first.chunks_written

    again = rag_ingest(**params)
    assert again.chunks_written == 0 and again.chunks_deleted == 0
    assert {r.status for r in again.sources} == {"unchanged"}
    assert _points_by_source(blocks, collection) == stored

    (corpus / "refunds.txt").write_text("Refunds are paid within 7 business days.\n")
    (corpus / "guide" / "herons.md").unlink()
    changed = rag_ingest(**params, delete_missing=True)
    statuses = {r.source: r.status for r in changed.sources}
    assert statuses["refunds.txt"] == "updated"
    assert statuses["guide/herons.md"] == "deleted"
    assert statuses["stations.csv#row-1"] == "unchanged"
    after = _points_by_source(blocks, collection)
    assert "guide/herons.md" not in after
    assert after["refunds.txt"] == 1  # the old chunks were replaced, not added to
    client = QdrantStore(location=blocks["path"], engine=blocks["engine"]).get_client()
    try:
        texts = [r.payload["text"] for r in client.scroll(collection, limit=100)[0]]
    finally:
        client.close()
    assert any("7 business days" in t for t in texts)
    assert not any("45 days" in t for t in texts)


def test_ingest_reports_skipped_inputs_in_artifacts(
    corpus: Path, blocks: dict[str, str], collection: str
) -> None:
    (corpus / "empty.md").write_text("")
    (corpus / "latin.txt").write_bytes("olé".encode("latin-1"))
    summary = rag_ingest(
        folder=str(corpus),
        collection=collection,
        qdrant_store=blocks["qdrant_store"],
        embedder=blocks["embedder"],
    )
    assert summary.found == 6 and summary.ingested == 4 and summary.skipped == 2
    assert summary.accounted
    table = Artifact.get("rag-ingest-summary")
    assert (
        table is not None
        and "latin.txt" in str(table.data)
        and "not valid UTF-8" in str(table.data)
    )
    progress = Artifact.get("rag-ingest-progress")
    assert progress is not None and float(progress.data) == 100.0


def test_records_ingest_and_filtered_search(blocks: dict[str, str], collection: str) -> None:
    summary = rag_ingest(
        records=[
            {"id": "en-1", "text": "Herons eat fish.", "metadata": {"lang": "en"}},
            {"id": "de-1", "text": "Reiher fressen Fische.", "metadata": {"lang": "de"}},
            {"id": "blank", "text": ""},
        ],
        collection=collection,
        qdrant_store=blocks["qdrant_store"],
        embedder=blocks["embedder"],
    )
    assert (summary.found, summary.ingested, summary.skipped) == (3, 2, 1)

    @flow
    def ask(query: str, where: dict | None) -> list:
        store = QdrantStore.load(blocks["qdrant_store"].split("/")[1])
        return search_chunks(store, LocalEmbedder().get_embeddings(), collection, query, 5, where)

    hits = ask("What do herons eat?", None)
    assert hits[0].source == "en-1" and hits[0].text == "Herons eat fish."
    assert hits[0].score > hits[-1].score
    assert {h.source for h in ask("What do herons eat?", {"metadata.lang": "de"})} == {"de-1"}
    assert ask("herons", {"source": ["nope"]}) == []


def test_wrong_dimension_is_a_clear_error(
    corpus: Path, blocks: dict[str, str], collection: str
) -> None:
    rag_ingest(
        folder=str(corpus),
        collection=collection,
        qdrant_store=blocks["qdrant_store"],
        embedder=blocks["embedder"],
    )
    OpenAIEmbedder(base_url="http://127.0.0.1:9/v1", dimensions=64).save("dim64", overwrite=True)
    with pytest.raises(CollectionDimensionError, match=r"stores 384-dimensional .* 64-dimensional"):
        rag_ingest(
            folder=str(corpus),
            collection=collection,
            qdrant_store=blocks["qdrant_store"],
            embedder="flowkit-openai-embedder/dim64",
        )


def test_bad_parameters_fail_with_clear_errors(blocks: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        rag_ingest(
            folder=str(tmp_path / "missing"),
            qdrant_store=blocks["qdrant_store"],
            embedder=blocks["embedder"],
        )
    with pytest.raises(ConfigurationError, match="exactly one of"):
        rag_ingest(qdrant_store=blocks["qdrant_store"], embedder=blocks["embedder"])


def test_tasks_compose_in_a_user_flow(harness: str, corpus: Path) -> None:
    store = QdrantStore(location=":memory:")
    embeddings = HashEmbeddings(dimension=256)

    @flow
    def my_pipeline() -> list:
        loaded = load_documents(folder=str(corpus))
        chunks = chunk_documents(loaded.documents, scope="mine")
        plan = prepare_upserts(store, "mine", chunks, dimension=256, scope="mine")
        written = embed_and_upsert(store, embeddings, "mine", plan.to_write, scope="mine")
        assert written == len(chunks)
        return search_chunks(store, embeddings, "mine", "heron mascot Kiri", top_k=1)

    [hit] = my_pipeline()
    assert hit.source == "guide/herons.md"
    with store.session() as client:
        assert client.count("mine").count == 4
        assert client.get_collection("mine").config.params.vectors["dense"].distance == (
            models.Distance.COSINE
        )


def test_document_checkpoint_quarantines_before_embedding(
    blocks: dict[str, str], collection: str
) -> None:
    summary = rag_ingest(
        records=[
            {"id": "ok", "text": "Herons hunt fish in shallow water.", "metadata": {"lang": "en"}},
            {"id": "short", "text": "Hi.", "metadata": {"lang": "en"}},
            {"id": "no-lang", "text": "Reiher fressen Fische im Flachwasser."},
        ],
        collection=collection,
        qdrant_store=blocks["qdrant_store"],
        embedder=blocks["embedder"],
        document_checks=DocumentChecks(min_chars=10, required_metadata=["lang"]),
    )
    assert (summary.found, summary.ingested, summary.skipped) == (3, 1, 2)
    reasons = {r.source: r.reason for r in summary.sources if r.status == "skipped"}
    assert "chars" in reasons["short"] and "document checkpoint" in reasons["short"]
    assert "meta.lang" in reasons["no-lang"]
    assert _points_by_source(blocks, collection) == {"ok": 1}  # never embedded
    table = Artifact.get("validation-rag-ingest-documents")
    assert table is not None and "expect_column_values_to_be_between" in str(table.data)


def test_the_local_embedder_embeds_one_batch_at_a_time(
    blocks: dict[str, str], collection: str
) -> None:
    """ONNX Runtime spreads one batch over every core: batches embedded side by side only made
    its threads compete (the flow reached 0.89 of the embedder's own throughput, 0.91 after)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    assert LocalEmbedder().concurrent_batches == 1
    assert LocalEmbedder(threads=1).concurrent_batches >= 1
    assert OpenAIEmbedder(model="m").concurrent_batches == 4  # a remote one: its latency overlaps
    records = [
        {"id": f"r{i}", "text": f"Record {i} says something about herons."} for i in range(8)
    ]
    state = rag_ingest(
        records=records,
        collection=collection,
        qdrant_store=blocks["qdrant_store"],
        embedder=blocks["embedder"],
        batch_size=2,
        return_state=True,
    )
    assert state.is_completed() and state.result().chunks_written == 8
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    spans = sorted((r.start_time, r.end_time) for r in runs if r.name.startswith("embed-chunks"))
    assert len(spans) == 4 and all(s and e for s, e in spans)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans


def test_an_ingest_materializes_its_collection_as_an_asset_from_its_corpus(
    corpus: Path, blocks: dict[str, str], collection: str
) -> None:
    """Lineage: the materialization event names the collection by a stable URI, carries the
    run's counts and the embedder, and relates the corpus folder as its upstream asset."""
    from flowkit_prefect.flows._lineage import collection_asset, corpus_asset
    from tests.helpers import wait_for_events

    summary = rag_ingest(
        folder=str(corpus),
        collection=collection,
        qdrant_store=blocks["qdrant_store"],
        embedder=blocks["embedder"],
    )
    store = QdrantStore(location=blocks["path"], engine=blocks["engine"])
    key = collection_asset(store, collection).key
    assert key == f"qdrant://localhost{Path(blocks['path']).resolve().as_posix()}/{collection}"
    (event,) = wait_for_events("prefect.asset.materialization.succeeded", key)
    assert event.payload == {
        "points": summary.chunks_written,
        "chunks_written": summary.chunks_written,
        "chunks_deleted": 0,
        "documents_ingested": 4,
        "documents_skipped": 0,
        "embedder": LocalEmbedder().model_label,
        "scope": Path(corpus).as_posix(),
        "store_engine": summary.store_engine,
    }
    assert event.resource["prefect.resource.name"] == f"Qdrant collection {collection}"
    related = {(r.id, r.role) for r in event.related}
    corpus_key = corpus_asset(str(corpus), "").key
    assert (corpus_key, "asset") in related
    assert ("flowkit-prefect", "asset-materialized-by") in related
    assert any(role == "flow-run" for _, role in related)
    assert wait_for_events("prefect.asset.referenced", corpus_key)

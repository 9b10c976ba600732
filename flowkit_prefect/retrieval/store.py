"""Qdrant operations: collections, idempotent upserts, stale-chunk deletion and search.

Functions here take any qdrant-client ``QdrantBase``: a ``QdrantClient`` (server, in-memory,
local mode) or the in-process engine's ``EdgeQdrant``, so every engine serves the same
operations. The tasks in ``flowkit_prefect.retrieval.tasks`` wrap
them with Prefect. Points have a named dense vector, ``dense``, a BM25 sparse vector, ``bm25``
(collections created before hybrid search have none), and this payload:
``text, source, scope, chunk_index, doc_hash, metadata``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, get_args

from qdrant_client import models
from qdrant_client.client_base import QdrantBase

from flowkit_prefect.exceptions import CollectionDimensionError, ConfigurationError
from flowkit_prefect.models.bm25 import bm25_documents
from flowkit_prefect.retrieval.types import Chunk, SearchHit, SearchMode

DENSE_VECTOR = "dense"
SPARSE_VECTOR = "bm25"
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
_RETRIEVE_BATCH = 1000
_PREFETCH_FACTOR = 4
"""Hybrid search fuses this many candidates per requested hit from each of dense and sparse."""


def ensure_collection(
    client: QdrantBase,
    collection: str,
    dimension: int,
    *,
    recreate: bool = False,
    payload_indexes: Sequence[str] = (),
) -> bool:
    """Create ``collection`` for ``dimension``-d cosine vectors and BM25 sparse vectors (with
    Qdrant's IDF modifier) unless it exists; True if created.

    An existing collection of another vector size raises ``CollectionDimensionError``.
    ``payload_indexes`` names payload keys to index as keywords (``QdrantStore.index_fields()``:
    the in-process engine and a server use them; qdrant-client's local mode has none); indexes
    missing from an existing collection are added.
    """
    if not collection or not collection.strip():
        raise ConfigurationError("The collection name is empty: pass a collection name.")
    exists = client.collection_exists(collection)
    if exists and recreate:
        client.delete_collection(collection)
        exists = False
    if exists:
        info = client.get_collection(collection)
        vectors = info.config.params.vectors
        params = vectors.get(DENSE_VECTOR) if isinstance(vectors, Mapping) else None
        stored = params.size if params is not None else getattr(vectors, "size", None)
        if params is None or stored != dimension:
            raise CollectionDimensionError(collection, stored, dimension)
        _add_indexes(client, collection, payload_indexes, info.payload_schema or {})
        return False
    client.create_collection(
        collection,
        vectors_config={
            DENSE_VECTOR: models.VectorParams(size=dimension, distance=models.Distance.COSINE)
        },
        sparse_vectors_config={
            SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)
        },
    )
    _add_indexes(client, collection, payload_indexes, {})
    return True


def _add_indexes(
    client: QdrantBase, collection: str, fields: Sequence[str], present: Mapping[str, Any]
) -> None:
    """Keyword indexes on ``fields`` that the collection's ``present`` schema lacks."""
    for field in fields:
        if field not in present:
            client.create_payload_index(collection, field, models.PayloadSchemaType.KEYWORD)


def has_sparse(client: QdrantBase, collection: str) -> bool:
    """Whether ``collection`` stores BM25 sparse vectors; a missing collection is a clear error."""
    try:
        info = client.get_collection(collection)
    except ValueError:  # local mode
        info = None
    except Exception as exc:  # a server answers 404
        if getattr(exc, "status_code", None) != 404:
            raise
        info = None
    if info is None:
        raise ConfigurationError(
            f"Qdrant collection {collection!r} does not exist: run the rag-ingest flow into it "
            "first, or check the collection name."
        )
    return SPARSE_VECTOR in (info.config.params.sparse_vectors or {})


def existing_doc_hashes(
    client: QdrantBase, collection: str, chunk_ids: Sequence[str]
) -> dict[str, str]:
    """``chunk_id -> doc_hash`` for the given ids that are already stored."""
    found: dict[str, str] = {}
    for start in range(0, len(chunk_ids), _RETRIEVE_BATCH):
        records = client.retrieve(
            collection,
            ids=list(chunk_ids[start : start + _RETRIEVE_BATCH]),
            with_payload=["doc_hash"],
            with_vectors=False,
        )
        for record in records:
            found[str(record.id)] = str((record.payload or {}).get("doc_hash", ""))
    return found


def plan_changes(
    chunks: Sequence[Chunk], stored: Mapping[str, str]
) -> tuple[list[Chunk], set[str], set[str]]:
    """Split chunks into (to write, unchanged sources, changed-or-new sources).

    A source is unchanged when every one of its chunk ids is stored with its current doc hash.
    """
    by_source: dict[str, list[Chunk]] = defaultdict(list)
    for chunk in chunks:
        by_source[chunk.source].append(chunk)
    to_write: list[Chunk] = []
    unchanged: set[str] = set()
    changed: set[str] = set()
    for source, source_chunks in by_source.items():
        if all(stored.get(c.chunk_id) == c.doc_hash for c in source_chunks):
            unchanged.add(source)
        else:
            changed.add(source)
            to_write.extend(source_chunks)
    return to_write, unchanged, changed


def upsert_chunks(
    client: QdrantBase,
    collection: str,
    chunks: Sequence[Chunk],
    vectors: Sequence[Sequence[float]],
    scope: str,
) -> int:
    """Write chunks with their vectors (idempotent: point ids are the chunk ids)."""
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
    if not chunks:
        return 0
    sparse = (
        bm25_documents([chunk.indexed_text for chunk in chunks])
        if has_sparse(client, collection)
        else [None] * len(chunks)
    )
    points = [  # built unvalidated: our own types, and validating 384 floats a point cost as much
        models.PointStruct.model_construct(  # as the engine's write
            id=chunk.chunk_id,
            vector=_vectors(vector, terms),
            payload={
                "text": chunk.text,
                "source": chunk.source,
                "scope": scope,
                "chunk_index": chunk.chunk_index,
                "doc_hash": chunk.doc_hash,
                "metadata": chunk.metadata,
                "context": chunk.context,
            },
        )
        for chunk, vector, terms in zip(chunks, vectors, sparse, strict=True)
    ]
    client.upsert(collection, points=points, wait=True)
    return len(points)


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def _cosine(unit_query: Sequence[float], stored: Any) -> float | None:
    """Cosine similarity of a unit query to a point's stored dense vector (Qdrant keeps cosine
    vectors normalised)."""
    dense = stored.get(DENSE_VECTOR) if isinstance(stored, Mapping) else None
    if not dense:
        return None
    return sum(q * d for q, d in zip(unit_query, dense, strict=False))


def _vectors(dense: Sequence[float], terms: tuple[list[int], list[float]] | None) -> dict[str, Any]:
    tolist = getattr(dense, "tolist", None)  # a numpy array: plain floats, as JSON needs
    values = tolist() if callable(tolist) else list(dense)
    named: dict[str, Any] = {DENSE_VECTOR: values}
    if terms is not None:
        named[SPARSE_VECTOR] = models.SparseVector(indices=terms[0], values=terms[1])
    return named


def count_points(client: QdrantBase, collection: str) -> int:
    """How many points the collection holds now (exact)."""
    return client.count(collection, exact=True).count


def _count(client: QdrantBase, collection: str, flt: models.Filter) -> int:
    return client.count(collection, count_filter=flt, exact=True).count


def delete_stale(
    client: QdrantBase,
    collection: str,
    scope: str,
    keep_ids: Iterable[str],
    sources: Iterable[str] | None = None,
) -> int:
    """Delete points of ``scope`` (limited to ``sources`` when given) not in ``keep_ids``.

    With ``sources`` it removes the old chunks of changed documents; without, it removes every
    chunk of the scope that the current corpus no longer has (documents deleted since).
    """
    must: list[models.Condition] = [
        models.FieldCondition(key="scope", match=models.MatchValue(value=scope))
    ]
    if sources is not None:
        source_list = sorted(set(sources))
        if not source_list:
            return 0
        must.append(models.FieldCondition(key="source", match=models.MatchAny(any=source_list)))
    keep = sorted(set(keep_ids))
    ids: list[models.ExtendedPointId] = list(keep)
    must_not: list[models.Condition] = [models.HasIdCondition(has_id=ids)] if ids else []
    flt = models.Filter(must=must, must_not=must_not)
    stale = _count(client, collection, flt)
    if stale:
        client.delete(collection, points_selector=models.FilterSelector(filter=flt), wait=True)
    return stale


def stored_sources(client: QdrantBase, collection: str, scope: str) -> dict[str, int]:
    """Every source stored under ``scope``, with its number of chunks (one scroll)."""
    counts: dict[str, int] = defaultdict(int)
    offset = None
    flt = models.Filter(
        must=[models.FieldCondition(key="scope", match=models.MatchValue(value=scope))]
    )
    while True:
        records, offset = client.scroll(
            collection, scroll_filter=flt, limit=1000, offset=offset, with_payload=["source"]
        )
        for record in records:
            counts[str((record.payload or {}).get("source", ""))] += 1
        if offset is None:
            return dict(counts)


def build_filter(conditions: Mapping[str, Any] | models.Filter | None) -> models.Filter | None:
    """A Qdrant filter from ``{"source": "a.md", "metadata.lang": ["en", "de"]}``.

    Each key must match: a scalar by equality, a list by any of its values. A ready
    ``models.Filter`` passes through.
    """
    if conditions is None or isinstance(conditions, models.Filter):
        return conditions
    if not isinstance(conditions, Mapping):
        raise ConfigurationError(
            f"A search filter must be a mapping of payload keys to values, got {conditions!r}"
        )
    must: list[models.Condition] = []
    for key, value in conditions.items():
        if isinstance(value, list | tuple | set):
            must.append(models.FieldCondition(key=key, match=models.MatchAny(any=list(value))))
        elif isinstance(value, str | int | bool):
            must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
        else:
            raise ConfigurationError(
                f"Filter value for {key!r} must be a string, integer, boolean or a list of them; "
                f"got {type(value).__name__}"
            )
    return models.Filter(must=must) if must else None


def search(
    client: QdrantBase,
    collection: str,
    vector: Sequence[float] | None,
    *,
    sparse: tuple[list[int], list[float]] | None = None,
    top_k: int = 5,
    conditions: Mapping[str, Any] | models.Filter | None = None,
    score_threshold: float | None = None,
) -> list[SearchHit]:
    """The ``top_k`` chunks that match ``conditions``, nearest to the dense ``vector``, best by
    the BM25 ``sparse`` query, or both fused by reciprocal rank (given both). In a fused search
    ``score_threshold`` (a cosine similarity) applies to the dense candidates."""
    flt = build_filter(conditions)
    if vector is not None and sparse is not None:
        limit = max(top_k * _PREFETCH_FACTOR, 20)
        response = client.query_points(
            collection,
            prefetch=[
                models.Prefetch(
                    query=list(vector),
                    using=DENSE_VECTOR,
                    limit=limit,
                    filter=flt,
                    score_threshold=score_threshold,
                ),
                models.Prefetch(
                    query=models.SparseVector(indices=sparse[0], values=sparse[1]),
                    using=SPARSE_VECTOR,
                    limit=limit,
                    filter=flt,
                ),
            ],
            query=models.FusionQuery(fusion=models.Fusion.RRF),
            limit=top_k,
            with_payload=True,
            with_vectors=[DENSE_VECTOR],
        )
    elif vector is not None:
        response = client.query_points(
            collection,
            query=list(vector),
            using=DENSE_VECTOR,
            limit=top_k,
            query_filter=flt,
            score_threshold=score_threshold,
            with_payload=True,
        )
    elif sparse is not None:
        response = client.query_points(
            collection,
            query=models.SparseVector(indices=sparse[0], values=sparse[1]),
            using=SPARSE_VECTOR,
            limit=top_k,
            query_filter=flt,
            score_threshold=score_threshold,
            with_payload=True,
        )
    else:
        raise ConfigurationError("A search needs a dense vector, a sparse query or both.")
    fused = vector is not None and sparse is not None
    unit_query = _unit(vector) if fused and vector is not None else []  # once, not per hit
    hits = []
    for point in response.points:
        payload = point.payload or {}
        if fused:
            similarity = _cosine(unit_query, point.vector)
        else:  # dense: the score is the cosine; sparse: there is none
            similarity = float(point.score) if sparse is None else None
        hits.append(
            SearchHit(
                chunk_id=str(point.id),
                source=str(payload.get("source", "")),
                text=str(payload.get("text", "")),
                score=float(point.score),
                chunk_index=int(payload.get("chunk_index", 0)),
                metadata=dict(payload.get("metadata") or {}),
                similarity=similarity,
                context=str(payload.get("context") or ""),
            )
        )
    return hits

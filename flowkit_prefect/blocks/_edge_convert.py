"""Translate qdrant-client request models into qdrant-edge's, and edge results back.

The store operations speak qdrant-client's models (so one code path serves a server, the
client's in-memory mode and the in-process engine); this module is the only place that knows
the edge engine's own types. Anything it cannot translate is a ``ConfigurationError`` that
names the construct, never a silent approximation.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import qdrant_edge as edge
from qdrant_client import models

from flowkit_prefect.exceptions import ConfigurationError

RRF_K = 2
"""Reciprocal-rank constant; qdrant-client's local mode and the Qdrant server both use 2."""

_DISTANCES = {
    models.Distance.COSINE: edge.Distance.Cosine,
    models.Distance.DOT: edge.Distance.Dot,
    models.Distance.EUCLID: edge.Distance.Euclid,
    models.Distance.MANHATTAN: edge.Distance.Manhattan,
}
_DISTANCE_NAMES = {
    "Cosine": models.Distance.COSINE,
    "Dot": models.Distance.DOT,
    "Euclid": models.Distance.EUCLID,
    "Manhattan": models.Distance.MANHATTAN,
}
_SCHEMAS = {
    models.PayloadSchemaType.KEYWORD: edge.PayloadSchemaType.Keyword,
    models.PayloadSchemaType.INTEGER: edge.PayloadSchemaType.Integer,
    models.PayloadSchemaType.FLOAT: edge.PayloadSchemaType.Float,
    models.PayloadSchemaType.BOOL: edge.PayloadSchemaType.Bool,
    models.PayloadSchemaType.TEXT: edge.PayloadSchemaType.Text,
    models.PayloadSchemaType.DATETIME: edge.PayloadSchemaType.Datetime,
    models.PayloadSchemaType.UUID: edge.PayloadSchemaType.Uuid,
    models.PayloadSchemaType.GEO: edge.PayloadSchemaType.Geo,
}


def unsupported(what: object) -> ConfigurationError:
    """The error for a request the in-process engine adapter does not translate."""
    return ConfigurationError(
        f"The in-process Qdrant engine does not support {what!r} through flowkit's store. Use "
        "the store operations in flowkit_prefect.retrieval.store, or set the QdrantStore "
        "block's engine to 'local' (qdrant-client local mode) or point it at a Qdrant server."
    )


def distance(value: models.Distance) -> edge.Distance:
    """The edge distance for a qdrant-client distance."""
    return _DISTANCES[value]


def distance_from_name(name: str) -> models.Distance:
    """The qdrant-client distance for the name edge writes in ``edge_config.json``."""
    return _DISTANCE_NAMES[name]


def schema(value: Any) -> edge.PayloadSchemaType:
    """The edge payload index type for a qdrant-client schema type (index params objects are
    not translated)."""
    try:
        return _SCHEMAS[models.PayloadSchemaType(value)]
    except (KeyError, ValueError) as exc:
        raise unsupported(value) from exc


def point_id(value: Any) -> int | str:
    """Ids come back from the engine as ``uuid.UUID``; qdrant-client returns strings."""
    return str(value) if isinstance(value, uuid.UUID) else value


def ids(values: Iterable[Any]) -> list[Any]:
    """Point ids as the engine takes them (UUID strings and unsigned integers pass as is)."""
    return [v if isinstance(v, int) and not isinstance(v, bool) else str(v) for v in values]


# --- filters -------------------------------------------------------------------------------


def filter_(flt: Any) -> edge.Filter | None:
    """An edge filter equal to a qdrant-client filter (None passes through)."""
    if flt is None:
        return None
    if not isinstance(flt, models.Filter):
        raise unsupported(flt)  # a gRPC filter
    min_should = None
    if flt.min_should is not None:
        min_should = edge.MinShould(
            [_condition(c) for c in flt.min_should.conditions], flt.min_should.min_count
        )
    return edge.Filter(
        must=_conditions(flt.must),
        should=_conditions(flt.should),
        must_not=_conditions(flt.must_not),
        min_should=min_should,
    )


def _conditions(value: Any) -> list[Any] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return [_condition(c) for c in items]


def _condition(cond: Any) -> Any:
    if isinstance(cond, models.FieldCondition):
        return edge.FieldCondition(
            key=cond.key,
            match=_match(cond.match) if cond.match is not None else None,
            range=_range(cond.range) if cond.range is not None else None,
            values_count=_values_count(cond.values_count),
            is_empty=cond.is_empty,
            is_null=cond.is_null,
        )
    if isinstance(cond, models.HasIdCondition):
        return edge.HasIdCondition(set(ids(cond.has_id)))
    if isinstance(cond, models.IsEmptyCondition):
        return edge.IsEmptyCondition(cond.is_empty.key)
    if isinstance(cond, models.IsNullCondition):
        return edge.IsNullCondition(cond.is_null.key)
    if isinstance(cond, models.HasVectorCondition):
        return edge.HasVectorCondition(cond.has_vector)
    if isinstance(cond, models.NestedCondition):
        nested = filter_(cond.nested.filter)
        assert nested is not None
        return edge.NestedCondition(cond.nested.key, nested)
    if isinstance(cond, models.Filter):
        return filter_(cond)
    raise unsupported(cond)


def _match(match: Any) -> Any:
    if isinstance(match, models.MatchValue):
        return edge.MatchValue(match.value)
    if isinstance(match, models.MatchAny):
        return edge.MatchAny(list(match.any))  # type: ignore[arg-type]
    if isinstance(match, models.MatchExcept):
        return edge.MatchExcept(list(match.except_))  # type: ignore[arg-type]
    if isinstance(match, models.MatchText):
        return edge.MatchText(match.text)
    if isinstance(match, models.MatchPhrase):
        return edge.MatchPhrase(match.phrase)
    raise unsupported(match)


def _range(value: Any) -> Any:
    if isinstance(value, models.Range):
        return edge.RangeFloat(gte=value.gte, gt=value.gt, lte=value.lte, lt=value.lt)
    if isinstance(value, models.DatetimeRange):
        return edge.RangeDateTime(
            gte=_iso(value.gte), gt=_iso(value.gt), lte=_iso(value.lte), lt=_iso(value.lt)
        )
    raise unsupported(value)


def _iso(value: Any) -> str | None:
    return None if value is None else (value if isinstance(value, str) else value.isoformat())


def _values_count(value: models.ValuesCount | None) -> edge.ValuesCount | None:
    if value is None:
        return None
    return edge.ValuesCount(lt=value.lt, gt=value.gt, lte=value.lte, gte=value.gte)


# --- queries -------------------------------------------------------------------------------


def query(value: Any, using: str | None) -> Any:
    """An edge scoring query: a dense or sparse vector to be near, or reciprocal-rank fusion."""
    if value is None:
        return None
    if isinstance(value, models.NearestQuery):
        value = value.nearest
    if isinstance(value, models.SparseVector):
        return edge.Query.Nearest(sparse(value), using=using)
    if isinstance(value, models.FusionQuery):
        if value.fusion == models.Fusion.RRF:
            return edge.Fusion.Rrf(k=RRF_K)
        return edge.Fusion.Dbsf()
    if isinstance(value, models.RrfQuery):
        return edge.Fusion.Rrf(k=value.rrf.k or RRF_K, weights=value.rrf.weights)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return edge.Query.Nearest([float(v) for v in value], using=using)
    tolist: Any = getattr(value, "tolist", None)  # a numpy array
    if tolist is not None:
        listed = cast(list[float], tolist())
        return edge.Query.Nearest([float(v) for v in listed], using=using)
    raise unsupported(value)


def prefetches(value: Any) -> list[edge.Prefetch]:
    """Edge prefetch stages for qdrant-client's (nested stages included)."""
    if value is None:
        return []
    items = [value] if isinstance(value, models.Prefetch) else list(value)
    if not all(isinstance(item, models.Prefetch) for item in items):
        raise unsupported(value)
    return [
        edge.Prefetch(
            limit=item.limit if item.limit is not None else 10,
            query=query(item.query, item.using),
            prefetches=prefetches(item.prefetch) or None,
            params=params(item.params),
            filter=filter_(item.filter),
            score_threshold=item.score_threshold,
        )
        for item in items
    ]


def params(value: Any) -> edge.SearchParams | None:
    """Edge search parameters (``hnsw_ef``, ``exact``, ``indexed_only``)."""
    if value is None:
        return None
    if not isinstance(value, models.SearchParams):
        raise unsupported(value)
    return edge.SearchParams(
        hnsw_ef=value.hnsw_ef, exact=bool(value.exact), indexed_only=bool(value.indexed_only)
    )


def with_payload(value: Any) -> Any:
    """``True``/``False``, a list of keys, or an include/exclude selector."""
    if isinstance(value, bool):
        return value
    if isinstance(value, models.PayloadSelectorInclude):
        return edge.PayloadSelector.Include(list(value.include))
    if isinstance(value, models.PayloadSelectorExclude):
        return edge.PayloadSelector.Exclude(list(value.exclude))
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    raise unsupported(value)


def with_vectors(value: Any) -> Any:
    """``True``/``False`` or a list of vector names."""
    if isinstance(value, bool):
        return value
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    raise unsupported(value)


# --- points --------------------------------------------------------------------------------


def sparse(value: models.SparseVector) -> edge.SparseVector:
    """An edge sparse vector."""
    return edge.SparseVector(value.indices, value.values)  # the engine reads any real numbers


def vector(value: Any) -> Any:
    """A point's vector(s): a dense list, or a mapping of names to dense or sparse vectors."""
    if isinstance(value, Mapping):
        return {name: vector(v) for name, v in value.items()}
    if isinstance(value, models.SparseVector):
        return sparse(value)
    if isinstance(value, list):
        return value  # as is: the engine reads any real numbers; a copy cost more than the write
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Sequence):
        return list(value)
    raise unsupported(value)


def points(value: Any) -> list[edge.Point]:
    """Edge points from a list of ``PointStruct`` or a ``Batch``."""
    if isinstance(value, models.Batch):
        vectors = value.vectors
        count = len(value.ids)
        payloads = value.payloads or [None] * count
        if isinstance(vectors, Mapping):
            per_point = [{name: vs[i] for name, vs in vectors.items()} for i in range(count)]
        else:
            per_point = list(vectors)
        return [
            edge.Point(id=ids([pid])[0], vector=vector(v), payload=p)
            for pid, v, p in zip(value.ids, per_point, payloads, strict=True)
        ]
    out = []
    for point in value:
        if not isinstance(point, models.PointStruct):
            raise unsupported(point)
        out.append(
            edge.Point(id=ids([point.id])[0], vector=vector(point.vector), payload=point.payload)
        )
    return out


def _vector_out(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {name: _vector_out(v) for name, v in value.items()}
    if isinstance(value, edge.SparseVector):
        return models.SparseVector(indices=list(value.indices), values=list(value.values))
    return value


def scored_point(point: edge.ScoredPoint) -> models.ScoredPoint:
    """A qdrant-client ``ScoredPoint`` for an edge one."""
    return models.ScoredPoint(
        id=point_id(point.id),
        version=point.version,
        score=point.score,
        payload=point.payload,
        vector=_vector_out(point.vector),
    )


def record(point: edge.Record) -> models.Record:
    """A qdrant-client ``Record`` for an edge one."""
    return models.Record(
        id=point_id(point.id), payload=point.payload, vector=_vector_out(point.vector)
    )

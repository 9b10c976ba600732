"""Move whole collections between stores: engine to engine, or through a snapshot file.

A snapshot is engine-neutral (gzipped JSON lines: a header with the collection's vectors and
payload indexes, then one line per point with its id, dense and sparse vectors and payload), so
a corpus built in an embedded folder can be restored into a Qdrant server, or the other way,
through the same store operations. The in-process engine cannot write Qdrant's own snapshot
format; the server-side format would not restore into qdrant-client's local mode either.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from qdrant_client import models
from qdrant_client.client_base import QdrantBase

from flowkit_prefect.exceptions import ConfigurationError

SNAPSHOT_FORMAT = "flowkit-snapshot/1"
BATCH = 512


def collection_spec(client: QdrantBase, collection: str) -> dict[str, Any]:
    """The collection's vectors, sparse vectors and payload indexes, as plain JSON."""
    info = client.get_collection(collection)
    vectors = info.config.params.vectors
    if vectors is None:
        raise ConfigurationError(f"Collection {collection!r} has no dense vectors to copy.")
    named = {"": vectors} if isinstance(vectors, models.VectorParams) else vectors
    return {
        "vectors": {n: {"size": p.size, "distance": p.distance.value} for n, p in named.items()},
        "sparse_vectors": {
            n: {"modifier": p.modifier.value if p.modifier else None}
            for n, p in (info.config.params.sparse_vectors or {}).items()
        },
        "payload_indexes": sorted(info.payload_schema or {}),
        "points": client.count(collection, exact=True).count,
    }


def create_from_spec(
    client: QdrantBase, collection: str, spec: Mapping[str, Any], *, recreate: bool = False
) -> None:
    """Create ``collection`` as ``spec`` describes; an existing one is an error unless
    ``recreate``."""
    if client.collection_exists(collection):
        if not recreate:
            raise ConfigurationError(
                f"Collection {collection!r} exists in the target store: restore under another "
                "name, or pass recreate=True (--recreate) to replace it."
            )
        client.delete_collection(collection)
    client.create_collection(
        collection,
        vectors_config={
            n: models.VectorParams(size=v["size"], distance=models.Distance(v["distance"]))
            for n, v in spec["vectors"].items()
        },
        sparse_vectors_config={
            n: models.SparseVectorParams(
                modifier=models.Modifier(v["modifier"]) if v.get("modifier") else None
            )
            for n, v in spec.get("sparse_vectors", {}).items()
        }
        or None,
    )


def iter_points(client: QdrantBase, collection: str) -> Iterator[list[models.Record]]:
    """Every point of ``collection`` with its vectors and payload, in batches."""
    offset = None
    while True:
        records, offset = client.scroll(
            collection, limit=BATCH, offset=offset, with_payload=True, with_vectors=True
        )
        if records:
            yield records
        if offset is None:
            return


def write_points(client: QdrantBase, collection: str, records: list[models.Record]) -> None:
    """Upsert records as they were read (ids unchanged, so writing twice is harmless)."""
    client.upsert(
        collection,
        points=[
            models.PointStruct(id=r.id, vector=cast(Any, r.vector or {}), payload=r.payload)
            for r in records
        ],
    )


def finish(client: QdrantBase, collection: str, spec: Mapping[str, Any], *, indexes: bool) -> int:
    """Check that every point arrived and add the payload indexes; the point count."""
    count = client.count(collection, exact=True).count
    if count != spec["points"]:
        raise ConfigurationError(
            f"Collection {collection!r}: {spec['points']} points expected but {count} written. "
            "Run the copy again (point ids are kept, so nothing is duplicated)."
        )
    if indexes:
        present = client.get_collection(collection).payload_schema or {}
        for field in spec.get("payload_indexes", []):
            if field not in present:
                client.create_payload_index(collection, field, models.PayloadSchemaType.KEYWORD)
    return count


def write_snapshot(client: QdrantBase, collection: str, path: str | Path) -> int:
    """Write ``collection`` to a snapshot file; the number of points written."""
    spec = collection_spec(client, collection)
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    written = 0
    with gzip.open(partial, "wt", encoding="utf-8") as out:
        out.write(json.dumps({"format": SNAPSHOT_FORMAT, "collection": collection, **spec}))
        out.write("\n")
        for records in iter_points(client, collection):
            for r in records:
                out.write(json.dumps(_point_json(r)) + "\n")
                written += 1
    if written != spec["points"]:
        partial.unlink()
        raise ConfigurationError(
            f"Collection {collection!r} changed while it was written ({spec['points']} points "
            f"counted, {written} read): write the snapshot again when no ingest runs."
        )
    partial.replace(target)  # a snapshot file is complete or absent
    return written


def read_snapshot_header(path: str | Path) -> dict[str, Any]:
    """The header of a snapshot file (collection name, vectors, point count)."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return _header(_first_line(lines), path)


def restore_snapshot(
    client: QdrantBase,
    path: str | Path,
    collection: str | None = None,
    *,
    recreate: bool = False,
    indexes: bool = True,
) -> tuple[str, int]:
    """Restore a snapshot file into ``client`` (under ``collection``, or the name it was
    written from); the collection name and its point count."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        spec = _header(_first_line(lines), path)
        name = collection or spec["collection"]
        create_from_spec(client, name, spec, recreate=recreate)
        batch: list[models.Record] = []
        for line in lines:
            batch.append(_point_record(json.loads(line)))
            if len(batch) >= BATCH:
                write_points(client, name, batch)
                batch = []
        if batch:
            write_points(client, name, batch)
    return name, finish(client, name, spec, indexes=indexes)


def _first_line(lines: Any) -> str:
    try:
        return lines.readline()
    except (OSError, EOFError, UnicodeDecodeError):  # not gzip, truncated, not text
        return ""


def _header(line: str, path: str | Path) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != SNAPSHOT_FORMAT:
        raise ConfigurationError(
            f"{path} is not a flowkit snapshot ({SNAPSHOT_FORMAT}): write one with "
            "`flowkit store snapshot`."
        )
    return header


def _point_json(record: models.Record) -> dict[str, Any]:
    vector = record.vector
    named = vector if isinstance(vector, Mapping) else {"": vector}
    out: dict[str, Any] = {}
    for name, value in named.items():
        if isinstance(value, models.SparseVector):
            out[name] = {"indices": value.indices, "values": value.values}
        else:
            out[name] = value
    return {"id": record.id, "vector": out, "payload": record.payload}


def _point_record(data: Mapping[str, Any]) -> models.Record:
    vectors: dict[str, Any] = {}
    for name, value in data["vector"].items():
        vectors[name] = models.SparseVector(**value) if isinstance(value, dict) else value
    vector: Any = vectors[""] if list(vectors) == [""] else vectors
    return models.Record(id=data["id"], vector=vector, payload=data.get("payload"))

"""The in-process Qdrant engine (qdrant-edge) behind qdrant-client's interface.

``EdgeQdrant`` is a ``QdrantBase``, like the client's local mode: the store operations call the
same methods with the same models whichever engine serves them. A store folder holds one edge
shard per collection under ``edge/<collection>``; shards open on first use and stay open until
``close``, which also runs the engine's optimizer (HNSW, vacuum) when anything was written.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as edge
from qdrant_client import models
from qdrant_client.client_base import QdrantBase
from qdrant_client.conversions import common_types as types
from qdrant_client.http.models import QueryResponse

from flowkit_prefect.blocks import _edge_convert as convert
from flowkit_prefect.blocks.qdrant import ENGINE_DIR
from flowkit_prefect.exceptions import ConfigurationError, StoreBusyError

LOCK_FILE = ".flowkit-edge.lock"
HNSW_M = 32
HNSW_EF_CONSTRUCT = 256
"""The graph's links per point and build beam; a search's beam defaults to the build's. Measured
at 200,000 384-d points with clusters of near-duplicates (bench_store.py): recall@10 0.977 and
a 75 s build, against 0.761 and 28 s with Qdrant's defaults (16, 100), whose recall a wider
search beam lifts only to 0.91."""
INDEXING_THRESHOLD_KB = 10_000
"""Segments above ~10 MB of vectors (about 6,500 384-d points) get an HNSW index; smaller
ones are searched exactly, which is faster than a graph at that size."""
FULL_SCAN_THRESHOLD_KB = 10_000
"""A filter that leaves fewer than ~10 MB of vectors is scored exactly, using payload indexes."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


def _config(
    dense: Mapping[str, models.VectorParams], sparse: Mapping[str, models.SparseVectorParams]
) -> edge.EdgeConfig:
    return edge.EdgeConfig(
        vectors={
            name: edge.EdgeVectorParams(size=p.size, distance=convert.distance(p.distance))
            for name, p in dense.items()
        },
        sparse_vectors={
            name: edge.EdgeSparseVectorParams(
                modifier=edge.Modifier.Idf if p.modifier == models.Modifier.IDF else None
            )
            for name, p in sparse.items()
        }
        or None,
        hnsw_config=edge.HnswIndexConfig(
            m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=FULL_SCAN_THRESHOLD_KB
        ),
        optimizers=edge.EdgeOptimizersConfig(indexing_threshold=INDEXING_THRESHOLD_KB),
    )


class EdgeQdrant(QdrantBase):
    """Qdrant's own engine, in this process, over a store folder (one shard per collection).

    Like qdrant-client's local mode it serves one process per folder; the ``QdrantStore``
    block's session queues runs on the folder's global concurrency limit.
    """

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(path)
        self.root.mkdir(parents=True, exist_ok=True)
        self._folder_lock = _lock_folder(self.root)
        self._shards: dict[str, edge.EdgeShard] = {}
        self._dirty: set[str] = set()
        self._lock = threading.RLock()
        self._closed = False

    # --- shards -------------------------------------------------------------------------

    def _dir(self, collection_name: str) -> Path:
        if not _NAME.match(collection_name):
            raise ConfigurationError(
                f"Collection name {collection_name!r} cannot name a store folder: use letters, "
                "digits, '.', '_' and '-' (starting with a letter or digit)."
            )
        return self.root / ENGINE_DIR / collection_name

    def _shard(self, collection_name: str) -> edge.EdgeShard:
        with self._lock:
            if self._closed:
                raise ConfigurationError("This store client is closed: open a new session.")
            shard = self._shards.get(collection_name)
            if shard is not None:
                return shard
            folder = self._dir(collection_name)
            if not (folder / "edge_config.json").exists():
                raise ValueError(f"Collection {collection_name} not found")  # as local mode
            shard = self._open(folder, None)
            self._shards[collection_name] = shard
            return shard

    def _open(self, folder: Path, config: edge.EdgeConfig | None) -> edge.EdgeShard:
        try:
            if config is None:
                return edge.EdgeShard.load(str(folder))
            return edge.EdgeShard.create(str(folder), config)
        except Exception as exc:
            if "WouldBlock" in str(exc):
                raise StoreBusyError(
                    f"The store folder {self.root} is open in another process. Open it through "
                    "QdrantStore.session(), which queues runs on a global concurrency limit, or "
                    "point the block at a Qdrant server URL for concurrent access."
                ) from exc
            raise

    def _stored_config(self, collection_name: str) -> dict[str, Any]:
        self._shard(collection_name)  # the collection exists
        return json.loads((self._dir(collection_name) / "edge_config.json").read_text())

    def _update(self, collection_name: str, operation: edge.UpdateOperation) -> None:
        shard = self._shard(collection_name)
        shard.update(operation)
        self._dirty.add(collection_name)

    # --- collections --------------------------------------------------------------------

    def collection_names(self) -> list[str]:
        """Every collection in the folder, sorted."""
        base = self.root / ENGINE_DIR
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / "edge_config.json").exists())

    def get_collections(self, **kwargs: Any) -> models.CollectionsResponse:
        return models.CollectionsResponse(
            collections=[models.CollectionDescription(name=n) for n in self.collection_names()]
        )

    def collection_exists(self, collection_name: str, **kwargs: Any) -> bool:
        return (self._dir(collection_name) / "edge_config.json").exists()

    def create_collection(
        self,
        collection_name: str,
        vectors_config: types.VectorParams | Mapping[str, types.VectorParams],
        sparse_vectors_config: Mapping[str, types.SparseVectorParams] | None = None,
        **kwargs: Any,
    ) -> bool:
        folder = self._dir(collection_name)
        if (folder / "edge_config.json").exists():
            raise ValueError(f"Collection {collection_name} already exists")
        dense = (
            {"": vectors_config}
            if isinstance(vectors_config, models.VectorParams)
            else dict(vectors_config)
        )
        with self._lock:
            folder.parent.mkdir(parents=True, exist_ok=True)
            self._shards[collection_name] = self._open(
                folder, _config(dense, sparse_vectors_config or {})
            )
        return True

    def delete_collection(self, collection_name: str, **kwargs: Any) -> bool:
        folder = self._dir(collection_name)
        with self._lock:
            shard = self._shards.pop(collection_name, None)
            self._dirty.discard(collection_name)
            if shard is not None:
                shard.close()
            if not folder.exists():
                return False
            shutil.rmtree(folder)
        return True

    def get_collection(self, collection_name: str, **kwargs: Any) -> models.CollectionInfo:
        stored = self._stored_config(collection_name)
        info = self._shard(collection_name).info()
        vectors = {
            name: models.VectorParams(
                size=v["size"], distance=convert.distance_from_name(v["distance"])
            )
            for name, v in (stored.get("vectors") or {}).items()
        }
        sparse = {
            name: models.SparseVectorParams(
                modifier=models.Modifier.IDF if v.get("modifier") == "idf" else None
            )
            for name, v in (stored.get("sparse_vectors") or {}).items()
        }
        return models.CollectionInfo(
            status=models.CollectionStatus.GREEN,
            optimizer_status=models.OptimizersStatusOneOf.OK,
            indexed_vectors_count=info.indexed_vectors_count,
            points_count=info.points_count,
            segments_count=info.segments_count,
            payload_schema={
                key: models.PayloadIndexInfo(
                    data_type=models.PayloadSchemaType(str(index.data_type).split(".")[-1].lower()),
                    points=index.points,
                )
                for key, index in info.payload_schema.items()
            },
            config=models.CollectionConfig(
                params=models.CollectionParams(vectors=vectors, sparse_vectors=sparse or None),
                hnsw_config=models.HnswConfig(
                    m=HNSW_M,
                    ef_construct=HNSW_EF_CONSTRUCT,
                    full_scan_threshold=FULL_SCAN_THRESHOLD_KB,
                ),
                optimizer_config=models.OptimizersConfig(
                    deleted_threshold=0.2,
                    vacuum_min_vector_number=1000,
                    default_segment_number=0,
                    indexing_threshold=INDEXING_THRESHOLD_KB,
                    flush_interval_sec=0,
                ),
                wal_config=None,
            ),
        )

    def create_payload_index(
        self,
        collection_name: str,
        field_name: str,
        field_schema: types.PayloadSchemaType | None = None,
        field_type: types.PayloadSchemaType | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        kind = field_schema or field_type
        if kind is None:
            raise ConfigurationError(f"Say which type of payload index {field_name!r} is.")
        operation = edge.UpdateOperation.create_field_index(field_name, convert.schema(kind))
        self._update(collection_name, operation)
        return _done()

    # --- points -------------------------------------------------------------------------

    def upsert(self, collection_name: str, points: Any, **kwargs: Any) -> models.UpdateResult:
        self._update(collection_name, edge.UpdateOperation.upsert_points(convert.points(points)))
        return _done()

    def delete(
        self, collection_name: str, points_selector: Any, **kwargs: Any
    ) -> models.UpdateResult:
        if isinstance(points_selector, models.FilterSelector):
            points_selector = points_selector.filter
        if isinstance(points_selector, models.Filter):
            flt = convert.filter_(points_selector)
            assert flt is not None
            operation = edge.UpdateOperation.delete_points_by_filter(flt)
        else:
            chosen = (
                points_selector.points
                if isinstance(points_selector, models.PointIdsList)
                else points_selector
            )
            operation = edge.UpdateOperation.delete_points(convert.ids(chosen))
        self._update(collection_name, operation)
        return _done()

    def retrieve(
        self,
        collection_name: str,
        ids: Sequence[types.PointId],
        with_payload: Any = True,
        with_vectors: Any = False,
        **kwargs: Any,
    ) -> list[types.Record]:
        found = self._shard(collection_name).retrieve(
            convert.ids(ids), convert.with_payload(with_payload), convert.with_vectors(with_vectors)
        )
        return [convert.record(r) for r in found]

    def count(
        self,
        collection_name: str,
        count_filter: types.Filter | None = None,
        exact: bool = True,
        **kwargs: Any,
    ) -> models.CountResult:
        request = edge.CountRequest(exact=exact, filter=convert.filter_(count_filter))
        return models.CountResult(count=self._shard(collection_name).count(request))

    def scroll(
        self,
        collection_name: str,
        scroll_filter: types.Filter | None = None,
        limit: int = 10,
        order_by: Any = None,
        offset: types.PointId | None = None,
        with_payload: Any = True,
        with_vectors: Any = False,
        **kwargs: Any,
    ) -> tuple[list[types.Record], types.PointId | None]:
        if order_by is not None:
            raise convert.unsupported("scroll order_by")
        records, next_offset = self._shard(collection_name).scroll(
            edge.ScrollRequest(
                offset=None if offset is None else convert.ids([offset])[0],
                limit=limit,
                filter=convert.filter_(scroll_filter),
                with_payload=convert.with_payload(with_payload),
                with_vector=convert.with_vectors(with_vectors),
            )
        )
        following = None if next_offset is None else convert.point_id(next_offset)
        return [convert.record(r) for r in records], following

    def query_points(
        self,
        collection_name: str,
        query: Any = None,
        using: str | None = None,
        prefetch: types.Prefetch | list[types.Prefetch] | None = None,
        query_filter: types.Filter | None = None,
        search_params: types.SearchParams | None = None,
        limit: int = 10,
        offset: int | None = None,
        with_payload: Any = True,
        with_vectors: Any = False,
        score_threshold: float | None = None,
        lookup_from: Any = None,
        **kwargs: Any,
    ) -> QueryResponse:
        if lookup_from is not None:
            raise convert.unsupported("lookup_from")
        request = edge.QueryRequest(
            limit=limit,
            offset=offset,
            query=convert.query(query, using),
            prefetches=convert.prefetches(prefetch) or None,
            with_vector=convert.with_vectors(with_vectors),
            with_payload=convert.with_payload(with_payload),
            filter=convert.filter_(query_filter),
            score_threshold=score_threshold,
            params=convert.params(search_params),
        )
        found = self._shard(collection_name).query(request)
        return QueryResponse(points=[convert.scored_point(p) for p in found])

    # --- lifecycle ----------------------------------------------------------------------

    def optimize(self, collection_name: str | None = None) -> list[str]:
        """Run the engine's optimizer (HNSW build, vacuum) on written collections, blocking;
        the names of those it changed."""
        changed = []
        with self._lock:
            names = [collection_name] if collection_name else sorted(self._dirty)
            for name in names:
                shard = self._shard(name)
                if shard.optimize():
                    changed.append(name)
                shard.flush()
                self._dirty.discard(name)
        return changed

    def iter_shards(self) -> Iterator[tuple[str, edge.EdgeShard]]:
        """Every open shard with its collection name."""
        with self._lock:
            yield from list(self._shards.items())

    def close(self, **kwargs: Any) -> None:
        """Optimize what was written, flush, and release every shard (idempotent)."""
        with self._lock:
            if self._closed:
                return
            try:
                self.optimize()
            finally:
                for shard in self._shards.values():
                    shard.close()
                self._shards.clear()
                self._closed = True
                os.close(self._folder_lock)  # releases the flock


def _lock_folder(root: Path) -> int:
    """Hold an exclusive lock on the folder for this client's lifetime, so a second opener
    (another process, or another client here) fails at once with a clear message rather than
    at its first write (the engine's own write-ahead-log lock is per collection)."""
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreBusyError(
            f"The store folder {root} is open in another process or client. Open it through "
            "QdrantStore.session(), which queues runs on a global concurrency limit and shares "
            "one client per process, or point the block at a Qdrant server URL for concurrent "
            "access."
        ) from None
    return fd


def _done() -> models.UpdateResult:
    return models.UpdateResult(operation_id=None, status=models.UpdateStatus.COMPLETED)

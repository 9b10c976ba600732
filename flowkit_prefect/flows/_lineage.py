"""Lineage as Prefect assets: what each template read and what it wrote, as stable URIs.

``rag-ingest`` materializes its Qdrant collection (``qdrant://<store>/<collection>``) from its
corpus (``file://<folder>`` or ``flowkit://records/<scope>``); ``rag-answer`` and
``plan-and-execute`` materialize their answers (``prefect://artifacts/<key>``) from the
collection they read; ``validated-pipeline`` materializes its valid and quarantined files from
the input file. Each materialization is a ``MaterializingTask`` run, so Prefect emits its
``prefect.asset.materialization.succeeded`` event (metadata in the payload, the upstream assets
as related resources) and ``prefect.asset.referenced`` events for what it read. Prefect Cloud
draws these as the asset graph; the open-source server lists them on its Events page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect.assets import Asset, AssetProperties, add_asset_metadata
from prefect.cache_policies import NO_CACHE
from prefect.tasks import MaterializingTask

from flowkit_prefect.blocks.qdrant import QdrantStore

_UNSAFE = re.compile(r"""[\s#?&%"'<>\[\]{}|\\^`]+""")
MATERIALIZED_BY = "flowkit-prefect"


def _safe(text: str) -> str:
    """``text`` without the characters Prefect refuses in asset keys (spaces, ``%``, ``#``...)."""
    return _UNSAFE.sub("-", text)


def collection_asset(store: QdrantStore, collection: str) -> Asset:
    """``qdrant://<host:port or folder>/<collection>``; ``qdrant://memory/...`` in memory."""
    if store.is_server:
        where = re.sub(r"^https?://", "", store.location).rstrip("/")
    elif store.is_memory:
        where = "memory"
    else:
        where = "localhost" + store.local_path().resolve().as_posix()
    return Asset(
        key=_safe(f"qdrant://{where}/{collection}"),
        properties=AssetProperties(
            name=f"Qdrant collection {collection}",
            description=f"Chunks and vectors written by rag-ingest ({store.engine_name}).",
        ),
    )


def file_asset(path: str | Path, name: str | None = None) -> Asset:
    """``file://<absolute path>``."""
    resolved = Path(path).resolve()
    return Asset(
        key=_safe(f"file://{resolved.as_posix()}"),
        properties=AssetProperties(name=name or resolved.name),
    )


def corpus_asset(folder: str | Path | None, scope: str) -> Asset:
    """The documents an ingest read: their folder, or ``flowkit://records/<scope>``."""
    if folder is not None:
        return file_asset(folder, name=f"Corpus {Path(folder).name or folder}")
    return Asset(
        key=_safe(f"flowkit://records/{scope}"),
        properties=AssetProperties(name=f"Inline records ({scope})"),
    )


def artifact_asset(key: str, description: str) -> Asset:
    """``prefect://artifacts/<key>``: the versions of a keyed artifact, e.g. the answers."""
    return Asset(
        key=f"prefect://artifacts/{key}",
        properties=AssetProperties(name=f"Artifact {key}", description=description),
    )


def _add_metadata(metadata: Mapping[str, Mapping[str, Any]]) -> None:
    for key, values in metadata.items():
        add_asset_metadata(key, dict(values))


def materialize(
    assets: Sequence[Asset],
    upstream: Sequence[Asset],
    metadata: Mapping[str, Mapping[str, Any]] | None = None,
    name: str = "materialize",
) -> None:
    """Run one materializing task: ``assets`` made from ``upstream``, with ``metadata`` (by asset
    key: counts and names, never data) in the materialization events."""
    task = MaterializingTask(
        fn=_add_metadata,
        assets=list(assets),
        materialized_by=MATERIALIZED_BY,
        asset_deps=list(upstream),
        name=name,
        cache_policy=NO_CACHE,
        persist_result=False,
    )
    task(dict(metadata or {}))


def latest_materialization(client: Any, key: str) -> Any | None:
    """The newest ``prefect.asset.materialization.succeeded`` event of ``key`` (last 24 h)."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    flt = EventFilter(
        event=EventNameFilter(name=["prefect.asset.materialization.succeeded"]),
        resource=EventResourceFilter(id=[key]),
    )
    events = client.read_events(filter=flt, limit=1).events
    return events[0] if events else None


def upstream_of(event: Any) -> list[str]:
    """The asset keys a materialization event names as its upstream."""
    return [r.id for r in event.related if r.role == "asset"]


def describe_lineage(client: Any, key: str) -> list[str]:
    """``key``'s lineage as text lines, newest materializations first: what it was made from,
    and what those were made from (one level further), with their metadata."""
    event = latest_materialization(client, key)
    if event is None:
        return []
    lines = [f"{key}  <- {', '.join(upstream_of(event)) or '(no upstream asset)'}"]
    for upstream in upstream_of(event):
        made = latest_materialization(client, upstream)
        if made is None:
            continue
        facts = ", ".join(f"{name} {value}" for name, value in (made.payload or {}).items())
        lines.append(f"{upstream}  <- {', '.join(upstream_of(made)) or '(none)'}")
        if facts:
            lines.append(f"    {facts}")
    return lines

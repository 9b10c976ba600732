"""Move a store folder written by qdrant-client's local mode to the in-process engine.

Every point (ids, dense and sparse vectors, payload) is copied collection by collection and
counted back; only then are the local-mode files moved aside into a backup folder, so nothing
is lost and the move can be undone by hand.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qdrant_client import QdrantClient
from qdrant_client.client_base import QdrantBase

from flowkit_prefect.blocks.edge_engine import EdgeQdrant
from flowkit_prefect.blocks.qdrant import ENGINE_DIR, LEGACY_MARKER, legacy_collections
from flowkit_prefect.exceptions import ConfigurationError, StoreBusyError
from flowkit_prefect.retrieval import transfer

_LEGACY_PARTS = (LEGACY_MARKER, "collection", ".lock")


@dataclass(frozen=True)
class MigratedCollection:
    """One collection moved: its name and how many points it holds in each engine."""

    name: str
    points_before: int
    points_after: int


def migrate_local_folder(
    folder: str | Path, progress: Callable[[str], None] = print
) -> list[MigratedCollection]:
    """Copy every collection of a local-mode store in ``folder`` into the in-process engine in
    the same folder, check the counts, then move the local-mode files to a backup folder."""
    root = Path(folder).expanduser().resolve()
    names = legacy_collections(root)
    if not names:
        raise ConfigurationError(
            f"{root} holds no qdrant-client local-mode collections (no {LEGACY_MARKER} listing "
            "any): nothing to migrate."
        )
    if (root / ENGINE_DIR).exists():
        raise ConfigurationError(
            f"{root / ENGINE_DIR} exists already: the folder was migrated, or written by the "
            "in-process engine. Move that folder aside to migrate again."
        )
    try:
        source = QdrantClient(path=str(root))
    except RuntimeError as exc:
        raise StoreBusyError(f"{root} is open in another process: stop it first.") from exc
    moved: list[MigratedCollection] = []
    try:
        target = EdgeQdrant(root)
        try:
            for name in names:
                moved.append(_copy(source, target, name))
                progress(f"{name}: {moved[-1].points_after} points")
        except BaseException:
            target.close()
            shutil.rmtree(root / ENGINE_DIR, ignore_errors=True)  # the source is untouched
            raise
        target.close()  # builds the HNSW indexes
    finally:
        source.close()
    backup = root / f"local-mode-backup-{time.strftime('%Y%m%d-%H%M%S')}"
    backup.mkdir()
    for part in _LEGACY_PARTS:
        if (root / part).exists():
            shutil.move(str(root / part), str(backup / part))
    progress(f"local-mode files moved to {backup} (delete it once you are satisfied)")
    return moved


def _copy(source: QdrantClient, target: QdrantBase, name: str) -> MigratedCollection:
    spec = transfer.collection_spec(source, name)
    transfer.create_from_spec(target, name, spec)
    for records in transfer.iter_points(source, name):
        transfer.write_points(target, name, records)
    spec["payload_indexes"] = ["source", "scope"]  # local mode has none; the engine uses them
    after = transfer.finish(target, name, spec, indexes=True)
    return MigratedCollection(name, spec["points"], after)

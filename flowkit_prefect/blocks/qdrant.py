"""The Qdrant block: one code path for the embedded local store and a Qdrant server."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from prefect.blocks.core import Block
from prefect.logging import get_logger
from pydantic import Field, HttpUrl, SecretStr, field_validator

from flowkit_prefect.exceptions import ConfigurationError, StoreBusyError, StoreUnavailableError

if TYPE_CHECKING:  # qdrant-client (~0.8 s to import) loads when a client is opened
    from qdrant_client.client_base import QdrantBase

logger = get_logger("flowkit.qdrant")


@dataclass
class _Shared:
    """A client shared by every task of one process that uses the same store."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    client: QdrantBase | None = None
    refs: int = 0
    exit_stack: contextlib.ExitStack | None = None


_shared: dict[str, _Shared] = {}
_shared_lock = threading.Lock()
_RELEASE_GRACE_SECONDS = 15.0  # how long a just-killed holder may take to let go of the folder


StoreEngine = Literal["auto", "edge", "local"]
ENGINE_DIR = "edge"
"""The in-process engine keeps one shard per collection under ``<folder>/edge/``."""
LEGACY_MARKER = "meta.json"
"""qdrant-client's local mode keeps its collection list in this file at the folder's root."""


def legacy_collections(path: Path) -> list[str]:
    """Collections of a qdrant-client local-mode store in ``path`` (from its ``meta.json``)."""
    import json

    try:
        meta = json.loads((path / LEGACY_MARKER).read_text())
    except (OSError, ValueError):
        return []
    return sorted((meta.get("collections") or {}).keys()) if isinstance(meta, dict) else []


class QdrantStore(Block):
    """Where vectors live: ``:memory:``, a local folder (embedded Qdrant), or a server URL.

    A local folder is served by Qdrant's own engine in this process (qdrant-edge: HNSW, payload
    indexes, a write-ahead log); ``:memory:`` by qdrant-client's in-memory mode; a URL by the
    server. Use ``session()`` rather than ``get_client()`` inside flows: for a local folder it
    waits for the store's Prefect global concurrency limit, because an embedded engine allows
    one process per folder and every deployment run is its own process.

    Example:
        ```python
        from flowkit_prefect import QdrantStore

        store = QdrantStore.load("BLOCK_NAME")
        with store.session() as client:
            print(client.get_collections())
        ```
    """

    _block_type_name = "Flowkit Qdrant Store"
    _block_type_slug = "flowkit-qdrant-store"
    _description = "A Qdrant vector store: in memory, an embedded local folder, or a server URL."
    _documentation_url = HttpUrl("https://github.com/flowkit-prefect/flowkit-prefect#blocks")

    location: str = Field(
        default=":memory:",
        description=(
            "':memory:' (this process only), a folder path for embedded Qdrant (one process at a "
            "time; runs queue on a global concurrency limit), or a server URL (http://...)."
        ),
    )
    engine: StoreEngine = Field(
        default="auto",
        description=(
            "Engine of a local folder: 'edge' (Qdrant's engine in-process), 'local' "
            "(qdrant-client's pure-Python local mode, for folders written before the in-process "
            "engine), or 'auto': edge, unless the folder holds a local-mode store."
        ),
    )
    payload_indexes: list[str] = Field(
        default_factory=list,
        description=(
            "Payload keys to index besides source and scope, for the filters you search with "
            "(for example 'metadata.lang'). Used by the in-process engine and a server."
        ),
    )
    api_key: SecretStr | None = Field(default=None, description="API key of a Qdrant server.")
    timeout: int = Field(default=30, ge=1, description="Seconds per request to a Qdrant server.")
    lock_timeout_seconds: float = Field(
        default=900.0,
        gt=0,
        description="How long a run waits for a local folder another run is using.",
    )
    lock_lease_seconds: float = Field(
        default=60.0,
        ge=60.0,  # the Prefect server's minimum lease
        le=300.0,
        description=(
            "Lease on a local folder's lock, renewed while a run holds it. A waiting run frees "
            "the folder of a crashed holder sooner, from the holder record (within 20 s)."
        ),
    )

    @field_validator("location")
    @classmethod
    def _location_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("location is empty: use ':memory:', a folder path, or a server URL")
        return value.strip()

    @property
    def is_server(self) -> bool:
        """True when ``location`` is a server URL."""
        return self.location.startswith(("http://", "https://"))

    @property
    def is_memory(self) -> bool:
        """True for the in-process ``:memory:`` store."""
        return self.location == ":memory:"

    def is_legacy_folder(self) -> bool:
        """True when the local folder holds a qdrant-client local-mode store with collections
        and nothing of the in-process engine yet (then ``auto`` keeps serving it as it is)."""
        if self.is_server or self.is_memory:
            return False
        path = self.local_path()
        return bool(legacy_collections(path)) and not (path / ENGINE_DIR).exists()

    @property
    def engine_name(self) -> str:
        """Which engine serves this store, as the ingest summary shows it."""
        if self.is_server:
            return "Qdrant server"
        if self.is_memory:
            return "qdrant-client in memory"
        return "qdrant-edge (in-process)" if self._uses_edge() else "qdrant-client local mode"

    def index_fields(self) -> list[str]:
        """Payload keys the store indexes (none in qdrant-client's modes, which cannot)."""
        if self.is_memory or not (self.is_server or self._uses_edge()):
            return []
        extra = [key for key in self.payload_indexes if key not in ("source", "scope")]
        return ["source", "scope", *extra]

    def _uses_edge(self) -> bool:
        if self.is_server or self.is_memory:
            return False
        if self.engine == "local":
            return False
        legacy = self.is_legacy_folder()
        if legacy and self.engine == "edge":
            raise ConfigurationError(
                f"{self.local_path()} holds a qdrant-client local-mode store. Migrate it to the "
                f"in-process engine first: flowkit store migrate {self.local_path()}"
            )
        return not legacy

    def local_path(self) -> Path:
        """The folder of an embedded store, with ``~`` and environment variables expanded."""
        return Path(os.path.expandvars(os.path.expanduser(self.location))).resolve()

    def lock_name(self) -> str:
        """Name of the global concurrency limit that guards an embedded store's folder."""
        digest = hashlib.sha1(str(self.local_path()).encode()).hexdigest()[:12]
        return f"flowkit-qdrant-local-{digest}"

    def _key(self) -> str:
        if self.is_server:
            return f"url:{self.location}"
        if self.is_memory:
            return f"memory:{self._block_document_id or id(self)}"
        return f"path:{self.local_path()}"

    def get_client(self) -> QdrantBase:
        """A new client for this location (``QdrantClient``, or ``EdgeQdrant`` for a local
        folder). The caller closes it.

        For a local folder prefer ``session()``, which also takes the cross-process lock.
        """
        from qdrant_client import QdrantClient

        if self.is_server:
            api_key = self.api_key.get_secret_value() if self.api_key else None
            return QdrantClient(url=self.location, api_key=api_key, timeout=self.timeout)
        if self.is_memory:
            return QdrantClient(location=":memory:")
        path = self.local_path()
        path.mkdir(parents=True, exist_ok=True)
        if self._uses_edge():
            from flowkit_prefect.blocks.edge_engine import EdgeQdrant

            return EdgeQdrant(path)
        if self.engine == "auto":
            logger.warning(
                "%s holds a qdrant-client local-mode store, served by the slower pure-Python "
                "engine. Move it to the in-process engine with: flowkit store migrate %s",
                path,
                path,
            )
        try:
            return QdrantClient(path=str(path))
        except RuntimeError as exc:  # "Storage folder ... is already accessed by another instance"
            raise StoreBusyError(
                f"The embedded Qdrant folder {path} is open in another process. Open it through "
                "QdrantStore.session(), which queues runs on a global concurrency limit, or point "
                "the block at a Qdrant server URL for concurrent access."
            ) from exc

    def _acquire_folder_lock(self, stack: contextlib.ExitStack) -> None:
        from flowkit_prefect.blocks._store_lock import hold_folder

        hold_folder(
            stack,
            self.lock_name(),
            self.local_path(),
            self.lock_timeout_seconds,
            self.lock_lease_seconds,
        )

    def _client_when_released(self) -> QdrantBase:
        """``get_client()`` for a folder whose run lock we hold, retried for a few seconds: a
        holder killed a moment ago keeps its file lock until the kernel has torn it down."""
        deadline = time.monotonic() + _RELEASE_GRACE_SECONDS
        while True:
            try:
                return self.get_client()
            except StoreBusyError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    @contextlib.contextmanager
    def session(self) -> Iterator[QdrantBase]:
        """A client for the duration of a ``with`` block, shared by the tasks of this process.

        ``:memory:`` stores live as long as the block object; a local folder is opened once per
        process and closed (releasing it to other runs) when the last session ends.
        """
        key = self._key()
        with _shared_lock:
            shared = _shared.setdefault(key, _Shared())
        with shared.lock:
            if shared.client is None:
                stack = contextlib.ExitStack()
                try:
                    if not self.is_server and not self.is_memory:
                        self._acquire_folder_lock(stack)
                        shared.client = self._client_when_released()
                    else:
                        shared.client = self.get_client()
                except BaseException:
                    stack.close()
                    raise
                shared.exit_stack = stack
            shared.refs += 1
            client = shared.client
        try:
            yield client
        except Exception as exc:
            if self.is_server and (reason := _unreachable(exc, self.timeout)):
                raise StoreUnavailableError(
                    f"Qdrant at {self.location} {reason}. Check that the server is running and "
                    "that the QdrantStore block's location and api_key are right; a re-run "
                    "writes what is missing (point ids are the chunk ids)."
                ) from exc  # still transient (the cause), so the task's retries apply
            raise
        finally:
            with shared.lock:
                shared.refs -= 1
                if shared.refs == 0 and not self.is_memory:
                    try:
                        client.close()
                    finally:
                        shared.client = None
                        if shared.exit_stack is not None:
                            shared.exit_stack.close()
                            shared.exit_stack = None

    def check(self) -> None:
        """Fail with a clear message when the store cannot be reached."""
        with self.session() as client:
            try:
                client.get_collections()
            except Exception as exc:
                raise ConfigurationError(
                    f"Cannot reach Qdrant at {self.location!r}: {exc}. Check the block's "
                    "location and api_key."
                ) from exc


def _unreachable(exc: BaseException, timeout: int) -> str | None:
    """Why a Qdrant client call failed to reach the server, or None for any other error (bad
    requests, and errors that are not the Qdrant client's, pass unchanged)."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        code = exc.status_code or 0
        return f"answered HTTP {code}" if code == 429 or code >= 500 else None
    if not isinstance(exc, ResponseHandlingException):
        return None
    cause = exc.source if isinstance(getattr(exc, "source", None), BaseException) else exc
    name = type(cause).__name__
    if "Timeout" in name:
        return f"did not answer within {timeout} s ({name})"
    if name == "ConnectError":
        return f"refused the connection or could not be reached ({cause})"
    return f"could not be reached ({name}: {cause})"

"""The cross-process lock of an embedded Qdrant folder: one slot of a Prefect global concurrency
limit, taken on a lease, plus a holder record next to the data that says who holds it.

Embedded Qdrant allows one process per folder, so every run that opens the folder takes the slot.
The holder keeps its lease renewed (the server's minimum lease is 60 s) and writes a heartbeat
into ``flowkit-holder.json`` every few seconds, with its flow run, PID, host, PID namespace and
lease id. A run that finds the slot taken reads the record and logs what it waits for, since
when, and who holds it. When the record shows the holder is gone (its PID is dead in the same
PID namespace on the same host, or its heartbeat stopped ``STALE_SECONDS`` ago) the waiter
releases that lease itself, so a holder killed with SIGKILL frees the folder within seconds to
``STALE_SECONDS``, not when its lease lapses. Qdrant's own file lock stays the last line of
defence: a holder that is only frozen still holds it, and opening the folder then fails with
``StoreBusyError`` instead of sharing it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from flowkit_prefect._logging import run_logger
from flowkit_prefect.exceptions import StoreBusyError

HOLDER_FILE = "flowkit-holder.json"
HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 20.0
"""A holder whose heartbeat is this old is gone (four missed beats)."""
POLL_SECONDS = 1.0
WAIT_LOG_SECONDS = 15.0
LOCKED = 423  # the server's answer while every slot of the limit is taken


def _now() -> float:
    return time.time()


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds")


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _flow_run() -> tuple[str | None, str | None]:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return None, None
    return str(ctx.flow_run.id), ctx.flow_run.name


def _read_record(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / HOLDER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True  # it exists, as another user
    except (OSError, TypeError, ValueError):
        return False
    return True


def holder_gone(record: dict[str, Any]) -> str | None:
    """Why the holder of ``record`` is gone, or None while it may be alive."""
    here = record.get("host") == socket.gethostname() and record.get("pid_ns") == _pid_namespace()
    if here and not _alive(record.get("pid")):
        return f"its process (PID {record.get('pid')}) has exited"
    beat = float(record.get("heartbeat") or 0)
    if beat and _now() - beat > STALE_SECONDS:
        return f"its heartbeat stopped {_now() - beat:.0f} s ago"
    return None


def describe_holder(folder: Path) -> str:
    """Who holds the folder, from its holder record: for the waiting run's log and errors."""
    record = _read_record(folder)
    if record is None:
        return "a run that left no holder record"
    who = (
        f"flow run {record.get('flow_run_name')!r} ({record.get('flow_run_id')})"
        if record.get("flow_run_id")
        else "a process outside any flow run"
    )
    return f"{who}, PID {record.get('pid')} on {record.get('host')}, since {record.get('since')}"


def _client() -> Any:
    from prefect import get_client

    return get_client(sync_client=True)


def _ensure_limit(name: str) -> None:
    from prefect.exceptions import ObjectAlreadyExists

    with _client() as client, contextlib.suppress(ObjectAlreadyExists):
        # create-if-missing; a concurrent creator winning the race is fine
        client.upsert_global_concurrency_limit_by_name(name, 1)


def _try_acquire(name: str, lease_seconds: float, holder: Any) -> uuid.UUID | None:
    """The lease id, or None while the slot is taken."""
    from prefect.exceptions import PrefectHTTPStatusError

    with _client() as client:
        try:
            response = client.increment_concurrency_slots_with_lease(
                names=[name], slots=1, mode="concurrency", lease_duration=lease_seconds,
                holder=holder,
            )  # fmt: skip
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code == LOCKED:
                return None
            raise
    return uuid.UUID(str(response.json()["lease_id"]))


def _release(lease_id: Any) -> None:
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    with _client() as client, contextlib.suppress(ObjectNotFound, PrefectHTTPStatusError):
        client.release_concurrency_slots_with_lease(uuid.UUID(str(lease_id)))


class _Holding:
    """While held: renew the lease and beat the heartbeat in a thread; release on close."""

    def __init__(self, folder: Path, lease_id: uuid.UUID, lease_seconds: float) -> None:
        run_id, run_name = _flow_run()
        started = _now()
        self._path = folder / HOLDER_FILE
        self._lease_id, self._lease_seconds = lease_id, lease_seconds
        self._record = {
            "lease_id": str(lease_id),
            "flow_run_id": run_id,
            "flow_run_name": run_name,
            "pid": os.getpid(),
            "pid_ns": _pid_namespace(),
            "host": socket.gethostname(),
            "since": _iso(started),
            "heartbeat": started,
        }
        self._write()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="flowkit-store-lease", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        partial = self._path.with_suffix(".part")
        partial.write_text(json.dumps(self._record))
        partial.replace(self._path)

    def _beat(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self._record["heartbeat"] = _now()
            with contextlib.suppress(OSError):
                self._write()
            if time.monotonic() - renewed >= self._lease_seconds / 3:
                with contextlib.suppress(Exception), _client() as client:  # next beat retries
                    client.renew_concurrency_lease(self._lease_id, self._lease_seconds)
                    renewed = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with contextlib.suppress(OSError):
            if (_read_record(self._path.parent) or {}).get("lease_id") == str(self._lease_id):
                self._path.unlink()
        _release(self._lease_id)


def hold_folder(
    stack: contextlib.ExitStack,
    name: str,
    folder: Path,
    timeout_seconds: float,
    lease_seconds: float,
) -> None:
    """Take the folder's slot (the global concurrency limit ``name``) until ``stack`` closes;
    while another run holds it, log who and since when, and take over from a holder that is
    gone. ``StoreBusyError`` after ``timeout_seconds``."""
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder

    _ensure_limit(name)
    folder.mkdir(parents=True, exist_ok=True)
    run_id, _ = _flow_run()
    holder = ConcurrencyLeaseHolder(type="flow_run", id=uuid.UUID(run_id)) if run_id else None
    logger = run_logger("flowkit.qdrant")
    started = time.monotonic()
    logged_at: float | None = None
    took_over = False
    while (lease_id := _try_acquire(name, lease_seconds, holder)) is None:
        waited = time.monotonic() - started
        record = _read_record(folder)
        gone = holder_gone(record) if record else None
        if record and gone and record.get("lease_id"):
            logger.warning(
                "The embedded Qdrant store %s was held by %s, but %s: releasing its slot",
                folder, describe_holder(folder), gone,
            )  # fmt: skip
            _release(record["lease_id"])
            took_over = True
            continue
        if waited >= timeout_seconds:
            raise StoreBusyError(
                f"Waited {timeout_seconds:.0f} s for the embedded Qdrant store {folder}, held by "
                f"{describe_holder(folder)}. Raise the block's lock_timeout_seconds, or use a "
                "Qdrant server URL for concurrent runs."
            )
        if logged_at is None or time.monotonic() - logged_at >= WAIT_LOG_SECONDS:
            logger.info(
                "Waiting for the embedded Qdrant store %s (global concurrency limit %s), "
                "%.0f s so far: held by %s.",
                folder, name, waited, describe_holder(folder),
            )  # fmt: skip
            logged_at = time.monotonic()
        time.sleep(min(POLL_SECONDS, max(0.0, timeout_seconds - waited)) or 0.05)
    waited = time.monotonic() - started
    if logged_at is not None or took_over:
        logger.info("Got the embedded Qdrant store %s after %.0f s", folder, waited)
    holding = _Holding(folder, lease_id, lease_seconds)
    stack.callback(holding.close)

"""Which faults are worth a retry: timeouts, dropped connections, rate limits and 5xx replies."""

from __future__ import annotations

from typing import Any

_TRANSIENT_NAMES = {
    "TimeoutError",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "ConnectError",
    "ReadError",
    "RemoteProtocolError",
    "APITimeoutError",
    "APIConnectionError",
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "ResponseHandlingException",
}


def is_transient(exc: BaseException) -> bool:
    """True for faults that may pass on a retry; false for bad input or bad credentials."""
    for error in _chain(exc):
        if isinstance(error, ConnectionError | TimeoutError):
            return True
        if type(error).__name__ in _TRANSIENT_NAMES:
            return True
        status = getattr(error, "status_code", None) or getattr(
            getattr(error, "response", None), "status_code", None
        )
        if isinstance(status, int) and (status == 429 or status >= 500):
            return True
    return False


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """A Prefect ``retry_condition_fn``: retry only when the failure is transient."""
    # _sync: the engine may call this from inside a running event loop (async tasks).
    error = state.result(raise_on_failure=False, _sync=True)
    return isinstance(error, BaseException) and is_transient(error)

"""``LLMTaskConfig``: every knob of an LLM task in one object, merged over the defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from flowkit_prefect.exceptions import ConfigurationError


class LLMTaskConfig(TypedDict, total=False):
    """Options for LLM tasks; give only what differs from ``DEFAULT_LLM_TASK_CONFIG``.

    Merge with ``DEFAULT_LLM_TASK_CONFIG | {"retries": 5}`` or pass the partial dict: the tasks
    merge it for you.
    """

    retries: int
    """Retries after a transient fault (rate limit, timeout, connection, 5xx); others fail now."""
    retry_delay_seconds: float
    """First backoff delay; it doubles on every retry."""
    retry_jitter_factor: float
    """Random spread of each delay (0.5 = up to ±50 %), so retries of many calls do not align."""
    timeout_seconds: float | None
    """A call still running after this is cancelled and counts as a transient timeout."""
    cache: bool
    """Replay a finished call with the same messages, model and settings instead of paying again."""
    cache_expiration_seconds: float | None
    """How long a cached reply stays valid; None keeps it."""
    structured_repairs: int
    """For structured output: how many times an invalid reply is sent back with its error."""
    task_name: str
    """Name of the task runs in the Prefect UI."""


DEFAULT_LLM_TASK_CONFIG: LLMTaskConfig = {
    "retries": 3,
    "retry_delay_seconds": 1.0,
    "retry_jitter_factor": 0.5,
    "timeout_seconds": 120.0,
    "cache": True,
    "cache_expiration_seconds": None,
    "structured_repairs": 2,
    "task_name": "llm-call",
}


@dataclass(frozen=True)
class ResolvedLLMTaskConfig:
    """Every option set: the defaults overridden by a caller's ``LLMTaskConfig``."""

    retries: int
    retry_delay_seconds: float
    retry_jitter_factor: float
    timeout_seconds: float | None
    cache: bool
    cache_expiration_seconds: float | None
    structured_repairs: int
    task_name: str


def resolve_config(config: LLMTaskConfig | None) -> ResolvedLLMTaskConfig:
    """The defaults overridden by ``config``, checked."""
    merged = DEFAULT_LLM_TASK_CONFIG | (config or {})
    unknown = set(merged) - set(LLMTaskConfig.__annotations__)
    if unknown:
        raise ConfigurationError(
            f"Unknown LLM task option(s) {sorted(unknown)}; "
            f"known: {sorted(LLMTaskConfig.__annotations__)}."
        )
    return ResolvedLLMTaskConfig(**merged)

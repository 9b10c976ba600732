"""Run many prompts through a model with a concurrency cap and rate limits that hold across every
worker: Prefect global concurrency limits, not just an in-process semaphore."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from prefect.utilities.asyncutils import run_coro_as_sync
from pydantic import BaseModel

from flowkit_prefect.blocks.chat_models import ChatModelBlock
from flowkit_prefect.exceptions import ConfigurationError
from flowkit_prefect.llm.config import LLMTaskConfig
from flowkit_prefect.llm.tasks import LLMResult, ainvoke_llm

Prompt = str | Sequence[BaseMessage]
Model = BaseChatModel | ChatModelBlock | Sequence[BaseChatModel | ChatModelBlock]


def _ensure_limit(name: str, limit: int, decay: float | None = None) -> None:
    """Create the global concurrency limit if it is missing (leave an existing one alone)."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(
                        name=name, limit=limit, slot_decay_per_second=decay or 0.0
                    )
                )


def _estimate_tokens(prompt: Prompt) -> int:
    text = prompt if isinstance(prompt, str) else " ".join(m.text for m in prompt)
    return max(1, len(text) // 4)


async def amap_llm(
    model: Model,
    prompts: Sequence[Prompt],
    *,
    output_type: type[BaseModel] | None = None,
    config: LLMTaskConfig | None = None,
    max_concurrency: int = 8,
    limit_name: str | None = None,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
) -> list[LLMResult]:
    """Call the model once per prompt, at most ``max_concurrency`` at a time; results in order.

    With ``limit_name`` the cap is the Prefect global concurrency limit
    ``flowkit-llm-<limit_name>`` shared by every flow run and worker, and
    ``requests_per_minute`` / ``tokens_per_minute`` become rate limits (limits with slot decay)
    of the same name; tokens are estimated from the prompt as characters / 4. Every prompt runs
    to the end; the first failure (if any) is raised after the others finished, so a re-run
    replays the finished calls from cache.
    """
    if max_concurrency < 1:
        raise ConfigurationError("max_concurrency must be at least 1.")
    if (requests_per_minute or tokens_per_minute) and not limit_name:
        raise ConfigurationError("Rate limits need a limit_name: they are shared through Prefect.")
    names: dict[str, str] = {}
    if limit_name:
        names["slots"] = f"flowkit-llm-{limit_name}"
        _ensure_limit(names["slots"], max_concurrency)
        if requests_per_minute:
            names["rpm"] = f"flowkit-llm-{limit_name}-rpm"
            _ensure_limit(names["rpm"], requests_per_minute, requests_per_minute / 60.0)
        if tokens_per_minute:
            names["tpm"] = f"flowkit-llm-{limit_name}-tpm"
            _ensure_limit(names["tpm"], tokens_per_minute, tokens_per_minute / 60.0)
    local = asyncio.Semaphore(max_concurrency)

    async def one(prompt: Prompt) -> LLMResult:
        from prefect.concurrency.asyncio import concurrency, rate_limit

        async with local:
            if "rpm" in names:
                await rate_limit(names["rpm"], occupy=1, strict=True)
            if "tpm" in names:
                await rate_limit(names["tpm"], occupy=_estimate_tokens(prompt), strict=True)
            guard: Any = (
                concurrency(names["slots"], occupy=1, strict=True)
                if "slots" in names
                else contextlib.nullcontext()
            )
            async with guard:
                return await ainvoke_llm(model, prompt, output_type=output_type, config=config)

    # One API client for the whole fan-out: otherwise each task run on this event loop builds
    # its own (an SSL context each, ~30 ms of CPU per call).
    from prefect.context import AsyncClientContext

    async with AsyncClientContext.get_or_create():
        outcomes = await asyncio.gather(*(one(p) for p in prompts), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return list(outcomes)  # type: ignore[arg-type]


def map_llm(model: Model, prompts: Sequence[Prompt], **kwargs: Any) -> list[LLMResult]:
    """Synchronous ``amap_llm``, for ordinary (sync) flows."""
    return run_coro_as_sync(amap_llm(model, prompts, **kwargs))

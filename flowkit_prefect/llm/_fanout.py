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
from flowkit_prefect.llm._config import LLMTaskConfig
from flowkit_prefect.llm._fanout_runner import RunnerCalls, require_flow_run, runner_spreads_calls
from flowkit_prefect.llm._gate import CallGate, use_gate
from flowkit_prefect.llm._tasks import LLMResult, ainvoke_llm

Prompt = str | Sequence[BaseMessage]
Model = BaseChatModel | ChatModelBlock | Sequence[BaseChatModel | ChatModelBlock]


def _ensure_limit(name: str, limit: int, decay: float | None = None) -> int:
    """Create the global concurrency limit if it is missing (leave an existing one alone);
    return its limit."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name).limit
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(
                        name=name, limit=limit, slot_decay_per_second=decay or 0.0
                    )
                )
            return client.read_global_concurrency_limit_by_name(name).limit


# A lane runs twice as many task runs as it has model-call slots: while one call's task run is
# being created or recorded by Prefect, another call already holds the slot.
TASK_RUNS_PER_SLOT = 2
# A lane of a shared limit gives its slots back after this many calls per slot, so fan-outs on
# other workers get their turn.
CALLS_PER_SLOT_PER_LEASE = 10
MAX_LANES = 5


def _lanes(slots: int, shared: bool) -> list[int]:
    """Split ``slots`` into lanes: one lane in process, up to ``MAX_LANES`` for a shared limit
    (each lane leases its slots from Prefect in one request)."""
    count = min(slots, MAX_LANES) if shared else 1
    return [slots // count + (1 if i < slots % count else 0) for i in range(count)]


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
    on_task_runner: bool | None = None,
) -> list[LLMResult]:
    """Call the model once per prompt, at most ``max_concurrency`` calls at a time; results in
    order.

    With ``limit_name`` the cap is the Prefect global concurrency limit
    ``flowkit-llm-<limit_name>`` shared by every flow run and worker (created with
    ``max_concurrency`` slots if missing; an existing limit keeps its own size), leased in a few
    blocks of slots rather than one request per call; ``requests_per_minute`` /
    ``tokens_per_minute`` become rate limits (limits with slot decay) of the same name, taken per
    call; tokens are estimated from the prompt as characters / 4. The cap and the limits cover
    the model call, not Prefect's bookkeeping around it. Every prompt runs to the end; the first
    failure (if any) is raised after the others finished, so a re-run replays the finished calls
    from cache.

    ``on_task_runner`` puts each call in a task run (``map-llm-call``) submitted to the flow's
    task runner, so a Dask cluster or process pool spreads them over its workers; by default
    that happens when the flow's runner is not the thread pool. On the thread pool the calls run
    on this event loop instead (same process, less overhead). Answers and usage are the same
    either way; on a runner the model (a block or a picklable chat model) travels to the
    workers.
    """
    if max_concurrency < 1:
        raise ConfigurationError("max_concurrency must be at least 1.")
    if (requests_per_minute or tokens_per_minute) and not limit_name:
        raise ConfigurationError("Rate limits need a limit_name: they are shared through Prefect.")
    if not prompts:
        return []
    if on_task_runner:
        require_flow_run()
    spread = runner_spreads_calls() if on_task_runner is None else on_task_runner
    slots_name = requests_name = tokens_name = None
    slots = min(max_concurrency, len(prompts))
    if limit_name:
        slots_name = f"flowkit-llm-{limit_name}"
        slots = min(slots, _ensure_limit(slots_name, max_concurrency))
        if slots < 1:
            raise ConfigurationError(
                f"The global concurrency limit {slots_name!r} has no slots; raise its limit."
            )
        if requests_per_minute:
            requests_name = f"flowkit-llm-{limit_name}-rpm"
            _ensure_limit(requests_name, requests_per_minute, requests_per_minute / 60.0)
        if tokens_per_minute:
            tokens_name = f"flowkit-llm-{limit_name}-tpm"
            _ensure_limit(tokens_name, tokens_per_minute, tokens_per_minute / 60.0)

    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(prompts)):
        queue.put_nowait(index)
    outcomes: list[Any] = [None] * len(prompts)

    calls = (
        RunnerCalls(model, output_type, config, slots, requests_name, tokens_name)
        if spread
        else None
    )

    async def run_one(index: int) -> None:
        try:
            if calls is not None:
                outcomes[index] = await calls.run(prompts[index])
            else:
                outcomes[index] = await ainvoke_llm(
                    model, prompts[index], output_type=output_type, config=config
                )
        except Exception as exc:  # every prompt runs; the first failure is raised at the end
            outcomes[index] = exc

    acquiring = asyncio.Lock()  # one lease request at a time from this fan-out

    async def lane(size: int) -> None:
        from prefect.concurrency.asyncio import concurrency

        while not queue.empty():
            budget = size * CALLS_PER_SLOT_PER_LEASE if slots_name else len(prompts)
            async with contextlib.AsyncExitStack() as lease:
                if slots_name:
                    async with acquiring:
                        await lease.enter_async_context(
                            concurrency(slots_name, occupy=size, strict=True)
                        )

                async def runner() -> None:
                    nonlocal budget
                    while budget > 0 and not queue.empty():
                        budget -= 1
                        await run_one(queue.get_nowait())

                if calls is not None:  # one call in flight per slot: the cap covers the task run
                    await asyncio.gather(*(runner() for _ in range(size)))
                else:
                    gate = CallGate(size, requests_limit=requests_name, tokens_limit=tokens_name)
                    with use_gate(gate):  # the runners' task runs inherit it
                        await asyncio.gather(*(runner() for _ in range(size * TASK_RUNS_PER_SLOT)))

    # One API client for the whole fan-out: otherwise each task run on this event loop builds
    # its own (an SSL context each, ~30 ms of CPU per call).
    from prefect.context import AsyncClientContext

    try:
        async with AsyncClientContext.get_or_create():
            lane_errors = await asyncio.gather(
                *(lane(size) for size in _lanes(slots, bool(slots_name))), return_exceptions=True
            )
    finally:
        if calls is not None:
            calls.close()
    for outcome in [*lane_errors, *outcomes]:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes


def map_llm(model: Model, prompts: Sequence[Prompt], **kwargs: Any) -> list[LLMResult]:
    """Synchronous ``amap_llm``, for ordinary (sync) flows."""
    return run_coro_as_sync(amap_llm(model, prompts, **kwargs))

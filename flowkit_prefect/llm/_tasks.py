"""Call chat models as Prefect tasks.

``invoke_llm`` / ``ainvoke_llm`` run one call as a task run: retried only on transient faults
(exponential backoff with jitter), cancelled at the configured timeout, replayed from cache when
the same messages went to the same model with the same settings, repaired a bounded number of
times when structured output is invalid, and tried on the next model of a fallback chain when a
model keeps failing transiently. Each call's tokens and cost land in the run's usage tracker.

Example:
    ```python
    from prefect import flow
    from pydantic import BaseModel
    from flowkit_prefect import LocalChatModel
    from flowkit_prefect.llm import invoke_llm, track_usage

    class Verdict(BaseModel):
        sentiment: str

    @flow
    def classify(text: str) -> str:
        with track_usage():
            return invoke_llm(LocalChatModel(), f"Sentiment of: {text}", output_type=Verdict).parsed
    ```
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext
from prefect.logging import get_logger
from prefect.results import ResultRecord  # pyright: ignore[reportPrivateImportUsage]
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import opaque
from pydantic import BaseModel

from flowkit_prefect._retry import is_transient, retry_on_transient
from flowkit_prefect.blocks.chat_models import ChatModelBlock
from flowkit_prefect.exceptions import ConfigurationError
from flowkit_prefect.llm._cache import LLMCallCachePolicy
from flowkit_prefect.llm._call import LLMResult, call_chat_model, call_chat_model_sync
from flowkit_prefect.llm._config import LLMTaskConfig, ResolvedLLMTaskConfig, resolve_config
from flowkit_prefect.llm._usage import CallUsage, current_tracker, emit_call_event

logger = get_logger("flowkit.llm")


ChatModelSource = BaseChatModel | ChatModelBlock | Sequence[BaseChatModel | ChatModelBlock]
"""What the LLM tasks call: a LangChain chat model, a chat model block (whose prices give the
cost), or a fallback chain of either, tried in order."""


def source_label(source: ChatModelSource) -> str:
    """The human-readable name of the model (the first of a fallback chain)."""
    first = source[0] if isinstance(source, Sequence) and source else source
    if isinstance(first, ChatModelBlock):
        return first.model_label
    return str(getattr(first, "model_name", "") or type(first).__name__)


class _Target:
    """A model to call, with its label and prices."""

    def __init__(self, source: BaseChatModel | ChatModelBlock) -> None:
        if isinstance(source, ChatModelBlock):
            self.model = source.get_chat_model()
            self.label = source.model_label
            self.block: ChatModelBlock | None = source
        elif isinstance(source, BaseChatModel):
            self.model = source
            self.label = source_label(source)
            self.block = None
        else:
            raise ConfigurationError(
                f"Expected a chat model block or a LangChain BaseChatModel, got {source!r}."
            )

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return self.block.cost(input_tokens, output_tokens) if self.block else 0.0


def _as_messages(prompt: str | Sequence[BaseMessage]) -> list[BaseMessage]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ConfigurationError("The prompt is empty.")
        return [HumanMessage(prompt)]
    messages = list(prompt)
    if not messages or not all(isinstance(m, BaseMessage) for m in messages):
        raise ConfigurationError("Pass a prompt string or a non-empty list of LangChain messages.")
    return messages


@functools.cache
def _configured_task(config: ResolvedLLMTaskConfig, label: str, sync: bool = False) -> Any:
    """The task (the sync variant for a task runner's worker) with ``config`` applied;
    memoized, since building a Prefect task re-reads the function's source (~1 ms a call)."""
    retries = config.retries
    expiration = config.cache_expiration_seconds
    return (call_chat_model_sync if sync else call_chat_model).with_options(
        name=config.task_name,
        task_run_name=f"{config.task_name} [{label[:40]}]",
        retries=retries,
        retry_delay_seconds=exponential_backoff(config.retry_delay_seconds)(retries)
        if retries
        else 0,
        retry_jitter_factor=config.retry_jitter_factor,
        retry_condition_fn=retry_on_transient,
        cache_policy=LLMCallCachePolicy() if config.cache else NO_CACHE,
        cache_expiration=datetime.timedelta(seconds=expiration) if expiration else None,
        persist_result=config.cache,
    )


SubmitCall = Callable[[Any, tuple[Any, ...]], Awaitable[State[Any]]]
"""Submits the configured sync ``llm-call`` task with these arguments to the flow's task runner
and returns its final state (a fan-out on a task runner)."""


async def ainvoke_llm(
    model: ChatModelSource,
    prompt: str | Sequence[BaseMessage],
    *,
    output_type: type[BaseModel] | None = None,
    config: LLMTaskConfig | None = None,
    tools: Sequence[Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> LLMResult:
    """Call a chat model (or the first of a fallback chain that works) as a Prefect task.

    ``tools`` (LangChain tools, functions or schemas) are bound with ``bind_tools``; the tool
    calls the model asks for come back in ``LLMResult.tool_calls``. ``metadata`` (e.g.
    ``{"flowkit_stage": "plan"}``) reaches the model as LangChain run metadata, for tracing.
    """
    return await call_through_chain(
        model, prompt, output_type=output_type, config=config, tools=tools, metadata=metadata
    )


CallStep = tuple[Any, tuple[Any, ...]]
"""A configured ``llm-call`` task and its arguments, for a driver to run."""

Chain = Generator[CallStep, tuple[State[Any], Any], LLMResult]
"""Yields the next call to run, receives its final state and result (or exception), returns the
answer: the fallback chain, budget, usage and events, written once for the sync and async
drivers."""


def _chain(
    model: ChatModelSource,
    prompt: str | Sequence[BaseMessage],
    *,
    output_type: type[BaseModel] | None,
    config: LLMTaskConfig | None,
    tools: Sequence[Any] | None,
    metadata: dict[str, Any] | None,
    sync: bool,
    submitted: bool = False,
) -> Chain:
    settings = resolve_config(config)
    messages = _as_messages(prompt)
    chain = list(model) if isinstance(model, Sequence) else [model]
    if not chain:
        raise ConfigurationError("The fallback chain is empty: pass at least one chat model.")
    tracker = current_tracker()
    ctx = FlowRunContext.get()
    flow_run_id = str(ctx.flow_run.id) if ctx and ctx.flow_run else None
    schema = output_type.model_json_schema() if output_type is not None else None
    tool_schemas = [convert_to_openai_tool(t) for t in tools] if tools else None
    last_error: BaseException | None = None
    for position, source in enumerate(chain):
        target = _Target(source)
        tracker.check()
        # opaque: Prefect would walk the model's fields and every message for futures on each
        # inline call; a task runner's submit (Dask) does not unwrap it, so those go plain
        hidden = (lambda value: value) if submitted else opaque
        arguments = (
            hidden(target.model),
            hidden(messages),
            schema,
            output_type,
            settings.structured_repairs,
            target.label,
            tool_schemas,
            settings.timeout_seconds,
            metadata,
        )
        state, outcome = yield _configured_task(settings, target.label, sync=sync), arguments
        if state.is_completed():
            result: LLMResult = outcome
            cached = state.name == "Cached"
            usage = CallUsage(
                model=target.label,
                task=settings.task_name,
                input_tokens=0 if cached else result.input_tokens,
                output_tokens=0 if cached else result.output_tokens,
                cost=0.0 if cached else target.cost(result.input_tokens, result.output_tokens),
                cached=cached,
            )
            tracker.record(usage)
            emit_call_event(usage, flow_run_id)
            return result.model_copy(update={"cached": cached})
        last_error = outcome if isinstance(outcome, BaseException) else None
        if last_error is None or not is_transient(last_error) or position == len(chain) - 1:
            break
        logger.warning(
            "%s kept failing transiently (%s); falling back to the next model",
            target.label,
            type(last_error).__name__,
        )
    if last_error is None:
        raise RuntimeError("llm-call ended in a non-completed state without an error")
    raise last_error


async def call_through_chain(
    model: ChatModelSource,
    prompt: str | Sequence[BaseMessage],
    *,
    output_type: type[BaseModel] | None = None,
    config: LLMTaskConfig | None = None,
    tools: Sequence[Any] | None = None,
    metadata: dict[str, Any] | None = None,
    submit: SubmitCall | None = None,
) -> LLMResult:
    """``ainvoke_llm``, whose ``llm-call`` task runs run inline, or go through ``submit`` to a
    task runner; the budget, usage, events and fallback chain stay in the calling process."""
    calls = _chain(
        model,
        prompt,
        output_type=output_type,
        config=config,
        tools=tools,
        metadata=metadata,
        sync=submit is not None,
        submitted=submit is not None,
    )
    step = next(calls)
    while True:
        task, arguments = step
        if submit is None:
            state = await task(*arguments, return_state=True)
        else:
            state = await submit(task, arguments)
        try:
            outcome = await state.aresult()
        except BaseException as exc:  # the task's own failure, re-raised by Prefect
            outcome = exc
        try:
            step = calls.send((state, outcome))
        except StopIteration as done:
            return done.value


def _state_value(state: State[Any]) -> Any:
    """``state.result()``, read straight from the result record a task run of this process left
    in memory (what Prefect's ``get_state_result`` does, without its hop through an event loop,
    ~0.5 ms a call); anything else goes through ``state.result()``."""
    if state.is_completed() and isinstance(state.data, ResultRecord):
        return state.data.result
    return state.result()


def invoke_llm(
    model: ChatModelSource,
    prompt: str | Sequence[BaseMessage],
    *,
    output_type: type[BaseModel] | None = None,
    config: LLMTaskConfig | None = None,
    tools: Sequence[Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> LLMResult:
    """Synchronous ``ainvoke_llm``, for ordinary (sync) flows: the sync ``llm-call`` variant
    runs in the calling thread (same cache key and result), so a call costs what a plain sync
    task costs instead of a hop to Prefect's event-loop thread (~50 ms)."""
    calls = _chain(
        model,
        prompt,
        output_type=output_type,
        config=config,
        tools=tools,
        metadata=metadata,
        sync=True,
    )
    step = next(calls)
    while True:
        task, arguments = step
        state = task(*arguments, return_state=True)
        try:
            outcome = _state_value(state)
        except BaseException as exc:  # the task's own failure, re-raised by Prefect
            outcome = exc
        try:
            step = calls.send((state, outcome))
        except StopIteration as done:
            return done.value

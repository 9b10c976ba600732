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

import asyncio
import datetime
import functools
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.logging import get_logger
from prefect.tasks import exponential_backoff
from prefect.utilities.asyncutils import run_coro_as_sync
from pydantic import BaseModel, Field

from flowkit_prefect._retry import is_transient, retry_on_transient
from flowkit_prefect.blocks.chat_models import ChatModelBlock
from flowkit_prefect.exceptions import ConfigurationError, ModelOutputError
from flowkit_prefect.llm._cache import LLMCallCachePolicy
from flowkit_prefect.llm._config import LLMTaskConfig, ResolvedLLMTaskConfig, resolve_config
from flowkit_prefect.llm._gate import model_call_slot
from flowkit_prefect.llm._usage import CallUsage, current_tracker, emit_call_event

logger = get_logger("flowkit.llm")


class LLMResult(BaseModel):
    """One finished call: the reply text, the parsed structured output, and what it used."""

    text: str
    parsed: Any = Field(default=None, description="Structured output, as JSON-ready data.")
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    repairs: int = Field(default=0, description="Invalid replies sent back before this one.")
    cached: bool = False
    tool_calls: list[dict[str, Any]] = Field(
        default_factory=list, description="Tool calls the model asked for: name, args, id."
    )

    def to_message(self) -> AIMessage:
        """The reply as an ``AIMessage``, to continue a conversation (e.g. a tool loop)."""
        return AIMessage(content=self.text, tool_calls=self.tool_calls)


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


def _usage(message: Any) -> tuple[int, int]:
    usage = getattr(message, "usage_metadata", None) or {}
    return int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))


async def _answer(
    runnable: Any,
    messages: list[BaseMessage],
    timeout: float | None,
    label: str,
    metadata: dict[str, Any] | None = None,
) -> Any:
    """One model call, in a slot of the fan-out's gate (if any), cancelled after ``timeout``.

    The timeout covers the model's answer only, not the wait for a slot or a rate limit.
    """
    async with model_call_slot(messages):
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await runnable.ainvoke(messages, config={"metadata": metadata or {}})
        except TimeoutError as exc:
            if not deadline.expired():  # the model's own timeout error: keep it as it is
                raise
            raise TimeoutError(
                f"{label} did not answer within {timeout} s; the call was cancelled "
                "(raise timeout_seconds in the LLM task config if the model is just slow)."
            ) from exc


async def _structured_call(
    model: BaseChatModel,
    messages: list[BaseMessage],
    output_type: type[BaseModel],
    repairs: int,
    label: str,
    timeout: float | None,
    metadata: dict[str, Any] | None = None,
) -> LLMResult:
    try:
        runnable = model.with_structured_output(output_type, include_raw=True)
    except NotImplementedError as exc:
        raise ConfigurationError(
            f"{label} does not support structured output; use a model with tool calling or "
            "JSON mode."
        ) from exc
    conversation = list(messages)
    input_tokens = output_tokens = 0
    error: Exception | None = None
    for attempt in range(repairs + 1):
        reply = await _answer(runnable, conversation, timeout, label, metadata)
        raw, parsed, error = reply["raw"], reply["parsed"], reply["parsing_error"]
        used_in, used_out = _usage(raw)
        input_tokens, output_tokens = input_tokens + used_in, output_tokens + used_out
        if error is None and parsed is not None:
            data = parsed.model_dump(mode="json") if isinstance(parsed, BaseModel) else parsed
            return LLMResult(
                text=getattr(raw, "text", "") or "",
                parsed=data,
                model=label,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                repairs=attempt,
            )
        text = getattr(raw, "text", "") or str(getattr(raw, "content", ""))
        conversation += [
            AIMessage(text),
            HumanMessage(
                f"That reply is not valid for the required schema: {error}. Reply again with "
                "only the corrected JSON."
            ),
        ]
    raise ModelOutputError(
        f"{label} gave no valid structured output for {output_type.__name__} after "
        f"{repairs + 1} attempts; last error: {error}"
    )


@task(name="llm-call", persist_result=True)
async def call_chat_model(
    model: BaseChatModel,
    messages: list[BaseMessage],
    schema: dict[str, Any] | None = None,
    output_type: type[BaseModel] | None = None,
    repairs: int = 2,
    label: str = "",
    tools: list[dict[str, Any]] | None = None,
    timeout_seconds: float | None = None,
    metadata: dict[str, Any] | None = None,
) -> LLMResult:
    """One model call (plus structured-output repairs) as a task run.

    ``schema`` is the JSON schema of ``output_type`` and ``tools`` are OpenAI-format tool
    schemas: they, not the Python objects, are what the cache key sees. ``timeout_seconds``
    bounds each model call (a structured-output repair is a call of its own). ``metadata``
    goes to the model as LangChain run metadata (tracing, test doubles); it is not in the key.
    """
    label = label or type(model).__name__
    if output_type is not None:
        return await _structured_call(
            model, messages, output_type, repairs, label, timeout_seconds, metadata
        )
    runnable: Any = model.bind_tools(tools) if tools else model
    reply = await _answer(runnable, messages, timeout_seconds, label, metadata)
    used_in, used_out = _usage(reply)
    return LLMResult(
        text=reply.text,
        model=label,
        input_tokens=used_in,
        output_tokens=used_out,
        tool_calls=[
            {"name": c["name"], "args": c["args"], "id": c.get("id") or f"call_{i}"}
            for i, c in enumerate(getattr(reply, "tool_calls", None) or [])
        ],
    )


@functools.cache
def _configured_task(config: ResolvedLLMTaskConfig, label: str) -> Any:
    """The task with ``config`` applied; memoized, since building a Prefect task re-reads the
    function's source (~1 ms a call)."""
    retries = config.retries
    expiration = config.cache_expiration_seconds
    return call_chat_model.with_options(
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
        runner = _configured_task(settings, target.label)
        state = await runner(
            target.model,
            messages,
            schema,
            output_type,
            settings.structured_repairs,
            target.label,
            tool_schemas,
            settings.timeout_seconds,
            metadata,
            return_state=True,
        )
        if state.is_completed():
            result: LLMResult = await state.aresult()
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
        try:
            await state.aresult()
        except BaseException as exc:  # the task's own failure, re-raised by Prefect
            last_error = exc
        if last_error is None or not is_transient(last_error) or position == len(chain) - 1:
            break
        logger.warning(
            "%s kept failing transiently (%s); falling back to the next model",
            target.label,
            type(last_error).__name__,
        )
    assert last_error is not None
    raise last_error


def invoke_llm(
    model: ChatModelSource,
    prompt: str | Sequence[BaseMessage],
    *,
    output_type: type[BaseModel] | None = None,
    config: LLMTaskConfig | None = None,
    tools: Sequence[Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> LLMResult:
    """Synchronous ``ainvoke_llm``, for ordinary (sync) flows."""
    return run_coro_as_sync(
        ainvoke_llm(
            model, prompt, output_type=output_type, config=config, tools=tools, metadata=metadata
        )
    )

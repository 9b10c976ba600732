"""The ``llm-call`` task: one model call (plus structured-output repairs) as a task run.

Two drivers of one conversation logic: the async task runs on the caller's event loop (the
inline path: a fan-out's gate and a real cancelling timeout), the sync task runs where a task
runner puts it (a pool thread, a Dask or process worker) through the model's sync interface,
which is safe in any thread. The repair dialogue is written once, as a generator that yields
each conversation to send and receives the model's reply.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Generator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from prefect import task
from pydantic import BaseModel, Field

from flowkit_prefect.exceptions import ConfigurationError, ModelOutputError
from flowkit_prefect.llm._gate import model_call_slot


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


Dialogue = Generator[list[BaseMessage], Any, LLMResult]
"""Yields the conversation to send next, receives the model's reply, returns the result."""


def _usage(message: Any) -> tuple[int, int]:
    usage = getattr(message, "usage_metadata", None) or {}
    return int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))


def _runnable(
    model: BaseChatModel,
    output_type: type[BaseModel] | None,
    tools: list[dict[str, Any]] | None,
    label: str,
) -> Any:
    if output_type is None:
        return model.bind_tools(tools) if tools else model
    try:
        return model.with_structured_output(output_type, include_raw=True)
    except NotImplementedError as exc:
        raise ConfigurationError(
            f"{label} does not support structured output; use a model with tool calling or "
            "JSON mode."
        ) from exc


def _plain(messages: list[BaseMessage], label: str) -> Dialogue:
    reply = yield messages
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


def _structured(
    messages: list[BaseMessage], output_type: type[BaseModel], repairs: int, label: str
) -> Dialogue:
    """Send the conversation; while the reply does not parse, send it back with its error."""
    conversation = list(messages)
    input_tokens = output_tokens = 0
    error: Exception | None = None
    for attempt in range(repairs + 1):
        reply = yield conversation
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


def _dialogue(
    messages: list[BaseMessage], output_type: type[BaseModel] | None, repairs: int, label: str
) -> Dialogue:
    if output_type is None:
        return _plain(messages, label)
    return _structured(messages, output_type, repairs, label)


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


def _answer_sync(
    runnable: Any,
    messages: list[BaseMessage],
    timeout: float | None,
    label: str,
    metadata: dict[str, Any] | None = None,
) -> Any:
    """One sync model call, given up after ``timeout``: it runs in a thread of its own, since
    a blocking call cannot be interrupted (the abandoned call finishes in the background)."""
    config: Any = {"metadata": metadata or {}}
    if timeout is None:
        return runnable.invoke(messages, config=config)
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def call() -> None:
        try:
            outcome["reply"] = runnable.invoke(messages, config=config)
        except BaseException as exc:  # handed to the waiting task run
            outcome["error"] = exc
        finally:
            done.set()

    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(call,), name="llm-call", daemon=True).start()
    if not done.wait(timeout):
        raise TimeoutError(
            f"{label} did not answer within {timeout} s; the call was abandoned (raise "
            "timeout_seconds in the LLM task config if the model is just slow)."
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["reply"]


def _cut_off_reply(exc: Exception, output_type: type[BaseModel] | None) -> dict[str, Any]:
    """A structured reply cut off at the token limit (the openai client raises
    ``LengthFinishReasonError``), as an invalid reply for the repair dialogue; else re-raise."""
    if output_type is None or type(exc).__name__ != "LengthFinishReasonError":
        raise exc
    completion = getattr(exc, "completion", None)
    choices = getattr(completion, "choices", None) or []
    usage = getattr(completion, "usage", None)
    used_in = int(getattr(usage, "prompt_tokens", 0) or 0)
    used_out = int(getattr(usage, "completion_tokens", 0) or 0)
    raw = AIMessage(
        content=(choices[0].message.content if choices else None) or "",
        usage_metadata={
            "input_tokens": used_in,
            "output_tokens": used_out,
            "total_tokens": used_in + used_out,
        },
    )
    error = ValueError(
        f"the reply reached the token limit ({used_out} tokens) before the JSON was complete; "
        "reply with shorter JSON (or raise max_tokens on the chat model block)"
    )
    return {"raw": raw, "parsed": None, "parsing_error": error}


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
    runnable = _runnable(model, output_type, tools, label)
    dialogue = _dialogue(messages, output_type, repairs, label)
    conversation = next(dialogue)
    while True:
        try:
            reply = await _answer(runnable, conversation, timeout_seconds, label, metadata)
        except Exception as exc:
            reply = _cut_off_reply(exc, output_type)
        try:
            conversation = dialogue.send(reply)
        except StopIteration as done:
            return done.value


@task(name="llm-call", persist_result=True)
def call_chat_model_sync(
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
    """``call_chat_model`` for a task runner's worker: the same parameters, cache key and
    result, through the model's sync ``invoke``."""
    label = label or type(model).__name__
    runnable = _runnable(model, output_type, tools, label)
    dialogue = _dialogue(messages, output_type, repairs, label)
    conversation = next(dialogue)
    while True:
        try:
            reply = _answer_sync(runnable, conversation, timeout_seconds, label, metadata)
        except Exception as exc:
            reply = _cut_off_reply(exc, output_type)
        try:
            conversation = dialogue.send(reply)
        except StopIteration as done:
            return done.value

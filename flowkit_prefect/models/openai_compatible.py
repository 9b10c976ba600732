"""``ChatOpenAI`` for any OpenAI-compatible server, with a configurable structured-output method
and token-limit parameter.

Needs the ``openai`` extra. Some servers (llama.cpp's, older vLLM) refuse
``response_format.type = json_schema``; they take ``function_calling`` or ``json_mode``. And
langchain-openai sends the reply limit as ``max_completion_tokens``, which servers such as
llama-cpp-python's ignore: without ``max_tokens`` they generate until the context is full.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.language_models import LanguageModelInput
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI

StructuredOutputMethod = Literal["json_schema", "function_calling", "json_mode"]
TokenLimitParam = Literal["max_completion_tokens", "max_tokens"]


class ChatOpenAICompatible(ChatOpenAI):
    """``ChatOpenAI`` whose ``with_structured_output`` defaults to ``structured_output_method``
    and whose requests carry the reply limit under ``token_limit_param``."""

    structured_output_method: StructuredOutputMethod = "json_schema"
    token_limit_param: TokenLimitParam = "max_completion_tokens"

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """No: ``dumpd`` would file it under ``ChatOpenAI``'s namespace, where langchain-core's
        ``load`` has no such class (and it admits no third-party class under
        ``allowed_objects="all"``). Configure it through its Prefect block instead."""
        return False

    def with_structured_output(  # type: ignore[override]
        self, schema: Any = None, *, method: StructuredOutputMethod | None = None, **kwargs: Any
    ) -> Runnable[Any, Any]:
        return super().with_structured_output(
            schema, method=method or self.structured_output_method, **kwargs
        )

    def _get_request_payload(
        self, input_: LanguageModelInput, *, stop: list[str] | None = None, **kwargs: Any
    ) -> dict:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        if self.token_limit_param == "max_tokens" and "max_completion_tokens" in payload:
            payload["max_tokens"] = payload.pop("max_completion_tokens")
        return payload

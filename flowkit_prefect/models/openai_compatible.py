"""``ChatOpenAI`` for any OpenAI-compatible server, with a configurable structured-output method.

Needs the ``openai`` extra. Some servers (llama.cpp's, older vLLM) refuse
``response_format.type = json_schema``; they take ``function_calling`` or ``json_mode``.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI

StructuredOutputMethod = Literal["json_schema", "function_calling", "json_mode"]


class ChatOpenAICompatible(ChatOpenAI):
    """``ChatOpenAI`` whose ``with_structured_output`` defaults to ``structured_output_method``."""

    structured_output_method: StructuredOutputMethod = "json_schema"

    def with_structured_output(  # type: ignore[override]
        self, schema: Any = None, *, method: StructuredOutputMethod | None = None, **kwargs: Any
    ) -> Runnable[Any, Any]:
        return super().with_structured_output(
            schema, method=method or self.structured_output_method, **kwargs
        )

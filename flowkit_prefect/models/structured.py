"""``with_structured_output`` for chat models that take a JSON-schema ``response_format``.

Three methods, as LangChain's providers name them: ``json_schema`` (decoding constrained to the
schema), ``json_mode`` (any JSON object; the prompt says which keys) and ``function_calling``
(the schema as a forced tool). Schemas may be pydantic models (v2 or v1), ``TypedDict``s or
JSON-schema dicts. The call carries ``ls_structured_output_format``, the metadata LangChain's
tracing reads, and a reply cut off by the token limit fails with an error naming the limit.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel

from flowkit_prefect.exceptions import ConfigurationError

StructuredMethod = Literal["json_schema", "json_mode", "function_calling"]
METHODS: tuple[str, ...] = ("json_schema", "json_mode", "function_calling")


def json_schema_of(schema: dict[str, Any] | type) -> dict[str, Any]:
    """The JSON schema of a pydantic model (v2 or v1), a ``TypedDict`` or a JSON-schema dict."""
    if isinstance(schema, dict):
        return schema
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema()  # keeps $defs; some models override it
    try:
        return convert_to_json_schema(schema)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            "Structured output needs a pydantic model, a TypedDict or a JSON-schema dict, "
            f"got {schema!r}"
        ) from exc


def _name_of(schema: dict[str, Any] | type) -> str:
    if isinstance(schema, dict):
        return str(schema.get("title") or "structured_output")
    return getattr(schema, "__name__", "structured_output")


def _cut_off(message: BaseMessage) -> OutputParserException | None:
    """An error naming the token limit when the reply stopped there with unfinished JSON."""
    metadata = getattr(message, "response_metadata", None) or {}
    if metadata.get("finish_reason") != "length":
        return None
    try:
        json.loads(message.text)
        return None  # complete after all: the limit fell right after the object closed
    except ValueError:
        pass
    usage = getattr(message, "usage_metadata", None) or {}
    used = usage.get("output_tokens")
    return OutputParserException(
        f"The reply reached the token limit{f' ({used} tokens)' if used else ''} before its "
        "JSON object closed. Raise max_tokens on the chat model (or its block), or ask for a "
        "smaller object.",
        llm_output=message.text,
    )


def _parser(schema: dict[str, Any] | type, method: str) -> Runnable[Any, Any]:
    """Message -> parsed object: a pydantic instance for model classes, else a dict."""
    pydantic_class = isinstance(schema, type) and is_basemodel_subclass(schema)
    text_parser: Any = (
        PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
        if pydantic_class
        else JsonOutputParser()
    )

    def parse(message: BaseMessage) -> Any:
        if method == "function_calling":
            calls = getattr(message, "tool_calls", None) or []
            if not calls:
                raise _cut_off(message) or OutputParserException(
                    f"The reply called no tool; expected a call of {_name_of(schema)!r}.",
                    llm_output=message.text,
                )
            args = calls[0]["args"]
            return text_parser.parse(json.dumps(args)) if pydantic_class else args
        error = _cut_off(message)
        if error is not None:
            raise error
        return text_parser.invoke(message)

    return RunnableLambda(parse, name=f"parse_{_name_of(schema)}")


def structured_output(
    model: BaseChatModel,
    schema: dict[str, Any] | type,
    *,
    method: str = "json_schema",
    include_raw: bool = False,
) -> Runnable[Any, Any]:
    """``model.with_structured_output(schema, method=..., include_raw=...)``.

    With ``include_raw`` the result is ``{"raw", "parsed", "parsing_error"}``, the shape
    LangChain's own providers return; without it a bad reply raises ``OutputParserException``.
    """
    if method not in METHODS:
        raise ConfigurationError(
            f"Structured output method {method!r} is not one of {', '.join(METHODS)}."
        )
    tracing = {"kwargs": {"method": method}, "schema": schema}
    bound: Runnable[Any, Any]
    if method == "function_calling":
        bound = model.bind_tools(
            [schema], tool_choice=_name_of(schema), ls_structured_output_format=tracing
        )
    else:
        response_format: dict[str, Any] = {"type": "json_object"}
        if method == "json_schema":
            response_format["schema"] = json_schema_of(schema)
        bound = model.bind(response_format=response_format, ls_structured_output_format=tracing)
    parser = _parser(schema, method)
    if not include_raw:
        return bound | parser

    def _parse(raw: Any) -> dict[str, Any]:
        try:
            return {"raw": raw, "parsed": parser.invoke(raw), "parsing_error": None}
        except Exception as exc:  # the caller decides what to do with a bad reply
            return {"raw": raw, "parsed": None, "parsing_error": exc}

    return bound | RunnableMap(raw=RunnablePassthrough()) | (lambda d: _parse(d["raw"]))

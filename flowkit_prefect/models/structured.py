"""Structured output through a JSON-schema ``response_format``, for chat models without tools."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from pydantic import BaseModel


def json_schema_of(schema: dict[str, Any] | type) -> dict[str, Any]:
    """The JSON schema of a pydantic model class or an already-written JSON-schema dict."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema()
    if isinstance(schema, dict):
        return schema
    raise TypeError(
        f"Structured output needs a pydantic model or a JSON-schema dict, got {schema!r}"
    )


def json_schema_structured_output(
    model: BaseChatModel, schema: dict[str, Any] | type, *, include_raw: bool = False
) -> Runnable[Any, Any]:
    """``model.with_structured_output`` built on ``response_format={"type": "json_object", ...}``.

    The model is asked for JSON constrained to the schema; the reply is parsed into the pydantic
    model (or a dict). With ``include_raw`` the result is ``{"raw", "parsed", "parsing_error"}``,
    the same shape LangChain's own providers return.
    """
    response_format = {"type": "json_object", "schema": json_schema_of(schema)}
    bound = model.bind(response_format=response_format)
    parser: Runnable[Any, Any]
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        parser = PydanticOutputParser(pydantic_object=schema)
    else:
        parser = JsonOutputParser()
    if not include_raw:
        return bound | parser

    def _parse(raw: Any) -> dict[str, Any]:
        try:
            return {"raw": raw, "parsed": parser.invoke(raw), "parsing_error": None}
        except Exception as exc:  # the caller decides what to do with a bad reply
            return {"raw": raw, "parsed": None, "parsing_error": exc}

    return bound | RunnableMap(raw=RunnablePassthrough()) | (lambda d: _parse(d["raw"]))

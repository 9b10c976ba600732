"""Structured output of the shipped chat models: the three methods, every schema kind, the token
budget that closes a constrained reply, and the error when a reply is cut off anyway."""

from __future__ import annotations

import json
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage
from llama_cpp import LlamaGrammar
from pydantic import BaseModel, Field

from flowkit_prefect import ConfigurationError
from flowkit_prefect.models.local_llm import ChatLocalLlama
from flowkit_prefect.models.schema_budget import (
    STRING_CHARS_PER_TOKEN,
    fit_schema,
    json_mode_grammar,
)
from flowkit_prefect.testing import FakeChatModel


class Note(BaseModel):
    title: str
    body: str = Field(description="The note itself.")
    tags: list[str] = Field(default_factory=list, max_length=3)


class NoteDict(TypedDict):
    title: Annotated[str, ..., "A short title"]
    body: Annotated[str, ..., "The note itself"]


def _lengths(schema: dict[str, Any]) -> list[int]:
    """Every maxLength in a schema, $defs included."""
    found: list[int] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "maxLength" in node:
                found.append(node["maxLength"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found


def test_fit_schema_bounds_every_unbounded_string_within_the_limit() -> None:
    schema = Note.model_json_schema()
    fitted = fit_schema(schema, max_tokens=256)
    assert "maxLength" not in json.dumps(schema)  # the caller's schema is left alone
    title, body = fitted["properties"]["title"], fitted["properties"]["body"]
    items = fitted["properties"]["tags"]["items"]
    assert title["maxLength"] == body["maxLength"] == items["maxLength"]
    # 2 strings + 3 array items share what the structure leaves
    share = title["maxLength"]
    assert 30 <= share <= (256 * STRING_CHARS_PER_TOKEN) / 5
    worst = {"title": "x" * share, "body": "x" * share, "tags": ["x" * share] * 3}
    assert len(json.dumps(worst)) / STRING_CHARS_PER_TOKEN <= 256


def test_fit_schema_keeps_callers_bounds_and_follows_refs() -> None:
    class Step(BaseModel):
        description: str = Field(max_length=40)
        owner: str

    class Plan(BaseModel):
        steps: list[Step] = Field(max_length=2)
        summary: str | None = None

    fitted = fit_schema(Plan.model_json_schema(), max_tokens=200)
    step = fitted["$defs"]["Step"]["properties"]
    assert step["description"]["maxLength"] == 40
    summary = next(o for o in fitted["properties"]["summary"]["anyOf"] if o["type"] == "string")
    assert step["owner"]["maxLength"] == summary["maxLength"] > 0
    assert LlamaGrammar.from_json_schema(json.dumps(fitted), verbose=False) is not None


def test_json_mode_grammar_fits_the_limit_and_compiles() -> None:
    for max_tokens in (32, 256, 512, 4096):
        grammar = json_mode_grammar(max_tokens)
        assert LlamaGrammar.from_string(grammar, verbose=False) is not None
    assert "{0,1}" in json_mode_grammar(256) and "{0,7}" in json_mode_grammar(4096)


def test_fake_model_structured_output_takes_every_method_and_schema_kind() -> None:
    reply = '{"title": "t", "body": "b", "tags": []}'
    model = FakeChatModel(responses=[reply])
    assert model.with_structured_output(Note).invoke("x") == Note(title="t", body="b", tags=[])
    assert model.with_structured_output(NoteDict).invoke("x")["body"] == "b"
    assert model.with_structured_output(Note, method="json_mode").invoke("x").title == "t"
    args = {"title": "a", "body": "c"}
    call = AIMessage("", tool_calls=[{"name": "Note", "args": args, "id": "1"}])
    tool_model = FakeChatModel(responses=[call])
    parsed = tool_model.with_structured_output(Note, method="function_calling").invoke("x")
    assert parsed == Note(title="a", body="c", tags=[])
    with pytest.raises(ConfigurationError, match="json_schema, json_mode, function_calling"):
        model.with_structured_output(Note, method="xml")
    raw = model.with_structured_output(NoteDict, include_raw=True).invoke("x")
    assert raw["parsing_error"] is None and raw["raw"].text == reply


def test_a_reply_cut_off_by_the_limit_names_the_limit() -> None:
    cut = AIMessage(
        '{"title": "half',
        response_metadata={"finish_reason": "length"},
        usage_metadata={"input_tokens": 3, "output_tokens": 8, "total_tokens": 11},
    )
    model = FakeChatModel(responses=[cut])
    with pytest.raises(OutputParserException, match=r"token limit \(2 tokens\).*Raise max_tokens"):
        model.with_structured_output(Note).invoke("x")
    raw = model.with_structured_output(Note, include_raw=True).invoke("x")
    assert "token limit" in str(raw["parsing_error"]) and raw["parsed"] is None


@pytest.mark.local_model
def test_offline_model_closes_every_method_within_the_limit() -> None:
    model = ChatLocalLlama(max_tokens=96)
    prompt = "Write a note about herons."
    note = model.with_structured_output(Note).invoke(prompt)
    assert isinstance(note, Note) and note.title
    as_dict = model.with_structured_output(NoteDict).invoke(prompt)
    assert set(as_dict) == {"title", "body"}
    called = model.with_structured_output(NoteDict, method="function_calling").invoke(prompt)
    assert set(called) == {"title", "body"}
    free = model.with_structured_output(NoteDict, method="json_mode", include_raw=True)
    result = free.invoke(prompt + " Reply as JSON with keys title and body.")
    assert isinstance(json.loads(result["raw"].text), dict)  # JSON mode: always an object
    assert result["raw"].usage_metadata["output_tokens"] <= 96


@pytest.mark.local_model
def test_offline_model_too_small_a_limit_is_a_clear_error() -> None:
    # the keys alone need more than 12 tokens: the reply is cut off, and the error says so
    model = ChatLocalLlama(max_tokens=12)
    with pytest.raises(OutputParserException, match="Raise max_tokens"):
        model.with_structured_output(Note).invoke("Write a note about herons.")


@pytest.mark.local_model
def test_offline_model_takes_openai_style_response_format() -> None:
    model = ChatLocalLlama(max_tokens=64)
    schema = {
        "type": "object",
        "properties": {"city": {"enum": ["Paris", "Rome"]}},
        "required": ["city"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": schema}}
    reply = model.bind(response_format=fmt).invoke("Capital of Italy?")
    assert json.loads(reply.text)["city"] in {"Paris", "Rome"}
    with pytest.raises(ConfigurationError, match="response_format"):
        model.bind(response_format={"type": "text/xml"}).invoke("hi")

"""The offline defaults for real: SmolLM2-135M through llama.cpp, MiniLM through ONNX Runtime."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Literal

import pytest
from pydantic import BaseModel

from flowkit_prefect import LocalChatModel, LocalEmbedder

pytestmark = pytest.mark.local_model


class Choice(BaseModel):
    city: Literal["Paris", "Berlin", "Rome"]
    confident: bool


def test_offline_chat_model_answers_and_reports_usage() -> None:
    block = LocalChatModel(max_tokens=24)
    model = block.get_chat_model()
    reply = model.invoke("What is the capital of France? Answer with one word.")
    assert reply.text.strip()
    usage = reply.usage_metadata
    assert usage is not None and usage["input_tokens"] > 5 and 0 < usage["output_tokens"] <= 24
    assert "SmolLM2-135M" in block.model_label and "offline demo model" in block.model_label
    again = model.invoke("What is the capital of France? Answer with one word.")
    assert again.text == reply.text  # temperature 0, fresh context: repeatable


def test_offline_chat_model_structured_output_follows_the_schema() -> None:
    model = LocalChatModel(max_tokens=64).get_chat_model()
    result = model.with_structured_output(Choice).invoke("Which city is the capital of Italy?")
    assert isinstance(result, Choice)
    assert result.city in {"Paris", "Berlin", "Rome"}


def test_offline_chat_model_bad_path_is_a_clear_error(tmp_path) -> None:
    from flowkit_prefect import ConfigurationError

    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ConfigurationError, match="Could not load the GGUF model"):
        LocalChatModel(model_path=str(bogus)).get_chat_model().invoke("hi")


def test_offline_embedder_is_semantic() -> None:
    embeddings = LocalEmbedder().get_embeddings()
    query = embeddings.embed_query("How long do refunds take?")
    close, far = embeddings.embed_documents(
        ["Refunds are paid within seven business days.", "Herons hunt fish in shallow water."]
    )
    assert len(query) == LocalEmbedder().dimension() == 384

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
            sum(x * x for x in a) * sum(y * y for y in b)
        )

    assert cos(query, close) > cos(query, far) + 0.2


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def test_offline_model_tool_calls_are_schema_valid() -> None:
    model = LocalChatModel(max_tokens=96).get_chat_model()
    forced = model.bind_tools([multiply], tool_choice="multiply").invoke("What is 6 times 7?")
    [call] = forced.tool_calls
    assert call["name"] == "multiply"
    assert set(call["args"]) == {"a", "b"} and all(
        isinstance(v, int) for v in call["args"].values()
    )
    free = model.bind_tools([multiply]).invoke("What is 6 times 7?")
    assert free.tool_calls or free.text  # either a valid call or a final answer, never junk


def test_offline_model_streams_tokens_with_usage_on_the_last_chunk() -> None:
    model = LocalChatModel(max_tokens=24).get_chat_model()
    prompt = "Name three colours."
    chunks = list(model.stream(prompt))
    assert len([c for c in chunks if c.text]) > 3  # tokens, not one whole message
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert whole.text == model.invoke(prompt).text
    assert whole.usage_metadata and 0 < whole.usage_metadata["output_tokens"] <= 24
    assert [c.usage_metadata is not None for c in chunks][-1] and not chunks[0].usage_metadata
    tool_chunks = list(model.bind_tools([multiply], tool_choice="multiply").stream("6 times 7?"))
    [call] = [c for chunk in tool_chunks for c in chunk.tool_call_chunks]
    assert call["name"] == "multiply" and set(json.loads(call["args"] or "{}")) == {"a", "b"}


async def test_offline_model_astream_leaves_the_event_loop_free() -> None:
    model = LocalChatModel(max_tokens=48).get_chat_model()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    pieces = [chunk.text async for chunk in model.astream("Tell me about herons.")]
    ticker.cancel()
    assert len(pieces) > 3 and ticks > len(pieces)  # the loop ran between tokens


def test_offline_model_drives_the_tool_agent(harness: str) -> None:
    from prefect import flow

    from flowkit_prefect import run_tool_agent

    @flow
    def run():
        return run_tool_agent(
            LocalChatModel(max_tokens=96),
            [multiply],
            "Use the tool: what is 6 times 7?",
            max_steps=3,
            config={"cache": False},
        )

    result = run()
    assert result.stopped in {"answered", "step_limit"}
    assert result.steps[0].kind == "model"
    for step in result.steps:
        if step.kind == "tool":
            assert step.name == "multiply" and step.error is None and step.output.isdigit()

"""Tasks and entry points work as plain calls outside a flow run (a notebook, a unit test), with
their logs on a standard logger, against the same real Prefect server, Qdrant and models."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from langchain_core.messages import AIMessage

from flowkit_prefect import (
    CodeProblem,
    ConfigurationError,
    QdrantStore,
    SubprocessSandbox,
    TestCase,
    answer_question,
    chunk_documents,
    embed_and_upsert,
    generate_code,
    invoke_llm,
    load_documents,
    prepare_upserts,
    run_plan,
    run_tool_agent,
    search_chunks,
)
from flowkit_prefect.agents.executors import ExecutorRegistry
from flowkit_prefect.testing import FakeChatModel, HashEmbeddings, ScriptedCoder


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_retrieval_tasks_index_search_and_answer_outside_a_flow(
    harness: str, corpus, caplog: pytest.LogCaptureFixture
) -> None:
    store, embeddings, collection = QdrantStore(), HashEmbeddings(), f"plain-{uuid.uuid4().hex[:8]}"
    with caplog.at_level(logging.INFO), store.session():
        loaded = load_documents(folder=str(corpus))
        chunks = chunk_documents(loaded.documents, scope="plain")
        plan = prepare_upserts(store, collection, chunks, 256, "plain")
        assert embed_and_upsert(store, embeddings, collection, plan.to_write, "plain") == len(
            chunks
        )
        hits = search_chunks(store, embeddings, collection, "How many days to return a product?")
    assert hits and hits[0].source == "refunds.txt"
    reply = '{"answer": "Within 45 days of delivery.", "sources": ["S1"], "answer_found": true}'
    answer = answer_question(FakeChatModel(responses=[reply]), "How long?", hits[:1], embeddings)
    assert answer.mode == "generated" and answer.citations[0].source == "refunds.txt"
    assert any("chunks" in r.getMessage() for r in caplog.records)  # logs reach a plain logger


def test_llm_call_and_tool_agent_outside_a_flow(harness: str) -> None:
    assert invoke_llm(FakeChatModel(responses=["hello"]), f"hi {uuid.uuid4()}").text == "hello"
    call = AIMessage(content="", tool_calls=[{"name": "add", "args": {"a": 2, "b": 2}, "id": "1"}])
    model = FakeChatModel(responses=[call, "Four."])
    result = run_tool_agent(model, [add], f"2 + 2? ({uuid.uuid4().hex})")
    assert result.stopped == "answered" and result.steps[1].output == "4"


def test_tool_approval_outside_a_flow_is_a_clear_error(harness: str) -> None:
    with pytest.raises(ConfigurationError, match="inside a @flow"):
        run_tool_agent(FakeChatModel(), [add], "2 + 2?", approve_tools=True)


def test_plan_and_code_generation_outside_a_flow(harness: str) -> None:
    registry = ExecutorRegistry()

    @registry.register("python", description="compute with Python")
    def compute(step, context):
        return "45"

    step = {"description": "Sum the numbers 0 to 9", "executor": "python", "depends_on": []}
    plan = json.dumps({"steps": [step]})
    planner = FakeChatModel(responses=[plan, "Done: 45."], model_name=f"planner-{uuid.uuid4()}")
    result = run_plan(planner, "Add up 0..9", registry)
    assert result.completed == 1 and result.plan.steps[0].output == "45"

    problem = CodeProblem(
        statement="Return twice x.",
        entry_point="double",
        public_tests=[TestCase(name="two", code="assert double(2) == 4")],
    )
    coder = ScriptedCoder(
        solutions={"double": ["def double(x):\n    return x + x\n"]},
        model_name=f"coder-{uuid.uuid4()}",
    )
    generated = generate_code(coder, problem, sandbox=SubprocessSandbox(wall_seconds=20))
    assert generated.stop_reason == "all_tests_passed"

"""The tool agent on real Prefect: every turn and tool call a task run, errors fed back,
a step limit, and approval of tool calls by a person through the flow's run input."""

from __future__ import annotations

import uuid

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from prefect import flow

from flowkit_prefect.agents.tool_agent import run_tool_agent
from flowkit_prefect.exceptions import ConfigurationError
from flowkit_prefect.testing import FakeChatModel
from tests.helpers import run_until_paused


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def divide(a: float, b: float) -> float:
    """Divide a by b."""
    return a / b


def _call(name: str, **args) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": uuid.uuid4().hex}])


def test_agent_calls_tools_and_answers(harness: str) -> None:
    model = FakeChatModel(responses=[_call("add", a=2, b=3), "The sum is 5."])

    @flow
    def run():
        return run_tool_agent(model, [add], f"What is 2 + 3? ({uuid.uuid4().hex})")

    result = run()
    assert result.stopped == "answered" and result.answer == "The sum is 5."
    assert [(s.kind, s.name) for s in result.steps] == [
        ("model", "fake-chat-model"),
        ("tool", "add"),
        ("model", "fake-chat-model"),
    ]
    assert result.steps[1].output == "5"
    tool_message = model.calls[1][-1]
    assert isinstance(tool_message, ToolMessage) and tool_message.content == "5"


def test_tool_errors_go_back_to_the_model(harness: str) -> None:
    model = FakeChatModel(
        responses=[_call("divide", a=1, b=0), _call("nope"), "Division by zero is undefined."]
    )

    @flow
    def run():
        return run_tool_agent(model, [divide], f"1/0? ({uuid.uuid4().hex})")

    result = run()
    assert result.stopped == "answered"
    assert "ZeroDivisionError" in result.steps[1].error
    assert "unknown tool 'nope'" in result.steps[3].error
    assert "Error: ZeroDivisionError" in model.calls[1][-1].content


def test_step_limit_stops_a_looping_model(harness: str) -> None:
    model = FakeChatModel(respond=lambda messages, **_: _call("add", a=1, b=1))

    @flow
    def run():
        return run_tool_agent(model, [add], f"loop ({uuid.uuid4().hex})", max_steps=3)

    result = run()
    assert result.stopped == "step_limit"
    assert sum(s.kind == "model" for s in result.steps) == 3


def test_bad_agent_configuration_is_a_clear_error(harness: str) -> None:
    @flow
    def run():
        return run_tool_agent(FakeChatModel(), [], "x")

    with pytest.raises(ConfigurationError, match="at least one tool"):
        run()


def test_a_person_can_refuse_a_tool_call(harness: str) -> None:
    from prefect.flow_runs import resume_flow_run

    model = FakeChatModel(responses=[_call("add", a=1, b=2), "I was not allowed to add."])
    run_name = f"approval-{uuid.uuid4().hex[:8]}"

    @flow(flow_run_name=run_name)
    def run():
        return run_tool_agent(model, [add], "1 + 2?", approve_tools=["add"])

    paused_id, worker, box = run_until_paused(run, run_name)
    resume_flow_run(paused_id, run_input={"approve": False, "reason": "not today"})
    worker.join(timeout=60)
    result = box["result"]
    assert result.answer == "I was not allowed to add."
    assert result.steps[1].error == "a person refused this call: not today"
    assert result.steps[1].output is None

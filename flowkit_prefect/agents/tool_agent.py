"""A tool-calling agent loop where every model turn and every tool call is a Prefect task.

The model sees the tools through ``bind_tools``; each turn either answers or asks for tool
calls. Tool errors go back to the model as tool messages, so it can correct itself; a step limit
bounds the loop; optionally a person approves each tool call in the Prefect UI
(``pause_flow_run(wait_for_input=ToolApproval)``) before it runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool
from langchain_core.tools import tool as as_tool
from prefect import task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import FlowRunContext, TaskRunContext
from prefect.input import RunInput
from pydantic import BaseModel, Field

from flowkit_prefect._injection import injection_reasons
from flowkit_prefect._logging import run_logger
from flowkit_prefect.blocks.chat_models import ChatModelBlock
from flowkit_prefect.exceptions import ConfigurationError
from flowkit_prefect.llm import LLMTaskConfig, invoke_llm
from flowkit_prefect.llm._cache import digest, messages_fingerprint

DEFAULT_AGENT_SYSTEM = (
    "You are a careful assistant. Use the tools when they help; when you have the answer, "
    "reply with it in plain text and call no tool."
)


class ToolApproval(RunInput):
    """What a person answers in the UI when a tool call waits for approval."""

    approve: bool = Field(description="Run this tool call?")
    reason: str = Field(default="", description="Told to the model when the call is refused.")


class AgentStep(BaseModel):
    """One step of the trajectory: a model turn or a tool call."""

    kind: Literal["model", "tool"]
    name: str
    input: Any = None
    output: Any = None
    error: str | None = None
    flags: list[str] = Field(
        default_factory=list, description="Why a tool's output looks like instructions."
    )


class AgentResult(BaseModel):
    """The agent's final answer, why it stopped, and every step it took."""

    answer: str
    stopped: Literal["answered", "step_limit"]
    steps: list[AgentStep] = Field(default_factory=list)


def _as_tools(tools: Sequence[Any]) -> dict[str, BaseTool]:
    converted = [t if isinstance(t, BaseTool) else as_tool(t) for t in tools]
    by_name = {t.name: t for t in converted}
    if len(by_name) != len(converted):
        raise ConfigurationError("Two tools share a name; give each tool a unique name.")
    return by_name


def tool_call_key(
    conversation: Sequence[BaseMessage], name: str, args: dict[str, Any], position: int
) -> str:
    """The idempotency key of one tool call: the conversation it answers (message contents,
    not ids), the tool, its arguments and its position in the model's turn. A re-run with the
    same inputs reaches the same call with the same key, so its finished result is replayed and
    a side effect is not repeated; the tool also receives it (``config["metadata"]``)."""
    payload = {
        "messages": messages_fingerprint(list(conversation)),
        "tool": name,
        "args": args,
        "position": position,
    }
    return "flowkit-tool-" + digest(payload)


@dataclass
class _ToolCallCache(CachePolicy):
    """Keyed on the call's idempotency key alone (the tool object itself is not hashed)."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        return inputs.get("idempotency_key") or None


@task(name="tool-call", cache_policy=_ToolCallCache(), persist_result=True)
def run_tool(tool: BaseTool, args: dict[str, Any], idempotency_key: str = "") -> str:
    """Run one tool call; its output is what the model sees next. With an idempotency key the
    finished result is kept and replayed for the same call instead of running the tool again."""
    config: Any = {"metadata": {"idempotency_key": idempotency_key}} if idempotency_key else None
    output = tool.invoke(args, config=config)
    return output if isinstance(output, str) else json.dumps(output, default=str)


def _approve(name: str, args: dict[str, Any]) -> ToolApproval:
    from prefect.flow_runs import pause_flow_run

    description = f"Approve tool call `{name}` with arguments:\n\n```json\n{json.dumps(args)}\n```"
    return pause_flow_run(
        wait_for_input=ToolApproval.with_initial_data(description=description, approve=True),
        timeout=3600,
    )


def run_tool_agent(
    model: BaseChatModel | ChatModelBlock | Sequence[BaseChatModel | ChatModelBlock],
    tools: Sequence[Any],
    task_text: str | Sequence[BaseMessage],
    *,
    system_prompt: str = DEFAULT_AGENT_SYSTEM,
    max_steps: int = 8,
    config: LLMTaskConfig | None = None,
    approve_tools: bool | Sequence[str] = False,
    replay_tool_calls: bool = True,
) -> AgentResult:
    """Run the tool loop inside the current flow; returns the answer and the trajectory.

    ``approve_tools``: True pauses before every tool call, a list of names before those only.
    A run that crashed or is retried replays its finished model turns (the LLM cache) and,
    with ``replay_tool_calls``, its finished tool calls (keyed by ``tool_call_key``, which
    the tool receives as ``config["metadata"]["idempotency_key"]``); turn it off for tools
    whose answer must be fresh on every run.
    """
    if max_steps < 1:
        raise ConfigurationError("max_steps must be at least 1.")
    by_name = _as_tools(tools)
    if not by_name:
        raise ConfigurationError("A tool agent needs at least one tool.")
    needs_approval = set(by_name) if approve_tools is True else set(approve_tools or [])
    if needs_approval and FlowRunContext.get() is None:
        raise ConfigurationError(
            "Approving tool calls pauses the flow run until a person answers in the UI: call "
            "run_tool_agent inside a @flow, or pass approve_tools=False."
        )
    logger = run_logger("flowkit.agents")
    conversation: list[BaseMessage] = [SystemMessage(system_prompt)]
    conversation += [HumanMessage(task_text)] if isinstance(task_text, str) else list(task_text)
    steps: list[AgentStep] = []
    agent_config: LLMTaskConfig = {"task_name": "agent-turn", **(config or {})}
    for _turn in range(max_steps):
        reply = invoke_llm(model, conversation, config=agent_config, tools=list(by_name.values()))
        steps.append(
            AgentStep(
                kind="model",
                name=reply.model,
                output=reply.text or None,
                input={"tool_calls": [c["name"] for c in reply.tool_calls]},
            )
        )
        conversation.append(reply.to_message())
        if not reply.tool_calls:
            return AgentResult(answer=reply.text, stopped="answered", steps=steps)
        asked = list(conversation)  # the conversation the tool calls of this turn answer
        for position, call in enumerate(reply.tool_calls):
            name, args, call_id = call["name"], call.get("args") or {}, call["id"]
            step = AgentStep(kind="tool", name=name, input=args)
            tool = by_name.get(name)
            if tool is None:
                step.error = f"unknown tool {name!r}; available: {sorted(by_name)}"
            elif name in needs_approval and not (decision := _approve(name, args)).approve:
                step.error = f"a person refused this call: {decision.reason or 'no reason given'}"
            else:
                key = tool_call_key(asked, name, args, position) if replay_tool_calls else ""
                runner = run_tool.with_options(
                    task_run_name=f"tool-call [{name}]",
                    cache_policy=_ToolCallCache() if replay_tool_calls else NO_CACHE,
                )
                state = runner(tool, args, key, return_state=True)
                try:
                    step.output = state.result()
                except Exception as exc:  # the model sees the error and may try again
                    step.error = f"{type(exc).__name__}: {exc}"
            step.flags = [] if step.error else injection_reasons(str(step.output))
            if step.error:
                logger.warning("Tool call %s failed: %s", name, step.error)
            elif step.flags:
                logger.warning(
                    "Tool call %s returned text that looks like instructions (%s); the model "
                    "gets it as the tool's output, data",
                    name,
                    "; ".join(step.flags),
                )
            steps.append(step)
            conversation.append(
                ToolMessage(
                    content=step.output if step.error is None else f"Error: {step.error}",
                    tool_call_id=call_id,
                    name=name,
                )
            )
    logger.warning("The agent reached its step limit (%d model turns)", max_steps)
    return AgentResult(
        answer="The agent stopped at its step limit before answering.",
        stopped="step_limit",
        steps=steps,
    )

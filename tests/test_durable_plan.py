"""A plan-and-execute run killed with SIGKILL in its third step, after the plan, an llm step and
a tool step had finished, then run again with the same inputs: the plan, the finished steps'
model calls and the tool call are replayed (the LLM cache and the tool call's idempotency key),
not repeated; only the cut-off step and the summary run. Counted from the models' and the
tool's own journals, in files, across the two processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

PLAN_RUN = textwrap.dedent(
    """
    import json, os, sys, time
    from langchain_core.messages import AIMessage, ToolMessage
    from langchain_core.runnables import RunnableConfig
    from langchain_core.tools import tool
    from prefect import flow
    from flowkit_prefect.agents.executors import (
        ExecutorRegistry, llm_executor, tool_agent_executor)
    from flowkit_prefect.agents.planning import run_plan
    from flowkit_prefect.testing import FakeChatModel

    goal, folder, hang_flag = sys.argv[1:4]
    PLAN = json.dumps({"steps": [
        {"description": "write the greeting", "executor": "llm", "depends_on": []},
        {"description": "record the greeting", "executor": "tool", "depends_on": [1]},
        {"description": "write the sign-off", "executor": "llm", "depends_on": [2]},
    ]})

    def write(messages, **_):
        prompt = str(messages[-1].content)
        if "write the sign-off" in prompt and os.path.exists(hang_flag):
            time.sleep(120)  # killed here, in step 3
        return "Goodbye." if "sign-off" in prompt else "Hello."

    def act(messages, **_):
        if any(isinstance(m, ToolMessage) for m in messages):
            return "recorded"
        return AIMessage(content="", tool_calls=[
            {"name": "record", "args": {"text": "Hello."}, "id": "call-0"}])

    @tool
    def record(text: str, config: RunnableConfig) -> str:
        '''Record a text (a side effect: one line per real call).'''
        with open(os.path.join(folder, "tool.log"), "a") as out:
            out.write(f"{text} {config['metadata']['idempotency_key']}\\n")
        return "recorded"

    def model(name, **kw):
        return FakeChatModel(model_name=name, journal=os.path.join(folder, f"{name}.log"), **kw)

    @flow
    def plan_and_execute() -> str:
        registry = ExecutorRegistry()
        registry.register("llm", llm_executor(model("writer", respond=write)), "write text")
        registry.register("tool", tool_agent_executor(model("actor", respond=act), [record]),
                          "record text")
        result = run_plan(model("planner", responses=[PLAN]), goal, registry,
                          summarizer=model("summarizer", responses=["All done."]))
        return " ".join(s.status for s in result.plan.steps)

    print("STATUSES", plan_and_execute(), flush=True)
    """
)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _counts(folder: Path) -> dict[str, int]:
    names = ("planner", "writer", "actor", "summarizer", "tool")
    return {name: len(_lines(folder / f"{name}.log")) for name in names}


def test_a_killed_plan_replays_its_finished_steps(harness: str, tmp_path: Path) -> None:
    flag = tmp_path / "hang"
    flag.touch()
    goal = f"Greet, record the greeting, sign off. ({uuid.uuid4().hex})"
    args = [sys.executable, "-c", PLAN_RUN, goal, str(tmp_path), str(flag)]
    env = {**os.environ, "PREFECT_API_URL": harness}
    first = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _counts(tmp_path)["tool"] < 1:
            assert first.poll() is None, first.stdout.read().decode()[-3000:]  # type: ignore[union-attr]
            time.sleep(0.2)
        time.sleep(2.0)  # step 3's model call is under way (and hangs)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    before = _counts(tmp_path)
    # the plan, step 1 (a writer call), step 2 (two actor turns and the tool call); no summary
    assert before == {"planner": 1, "writer": 1, "actor": 2, "summarizer": 0, "tool": 1}, before

    flag.unlink()
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "STATUSES completed completed completed" in again.stdout
    after = _counts(tmp_path)
    made = {name: after[name] - before[name] for name in after}
    print(f"\nafter the kill: {before}; the re-run made {made}")
    # only step 3's writer call and the summary ran again; the rest came from the cache
    assert made == {"planner": 0, "writer": 1, "actor": 0, "summarizer": 1, "tool": 0}, made
    keys = [line.split()[1] for line in _lines(tmp_path / "tool.log")]
    assert len(keys) == 1 and keys[0].startswith("flowkit-tool-")

"""A tool-agent run killed with SIGKILL after two model turns and two tool calls, then run again
with the same inputs: the finished model turns and tool calls are replayed (the LLM cache and the
tool calls' idempotency keys), not repeated; only the unfinished turn runs. Counted from the
model's and the tool's own journals, in files, across the two processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

AGENT = textwrap.dedent(
    """
    import os, sys, time
    from langchain_core.messages import ToolMessage
    from langchain_core.runnables import RunnableConfig
    from langchain_core.tools import tool
    from prefect import flow
    from flowkit_prefect import run_tool_agent
    from flowkit_prefect.testing import FakeChatModel
    from langchain_core.messages import AIMessage

    task_text, journal, tools_journal, hang_flag = sys.argv[1:5]

    def respond(messages, **_):
        done = sum(isinstance(m, ToolMessage) for m in messages)
        if done < 2:
            return AIMessage(content="", tool_calls=[
                {"name": "record", "args": {"n": done + 1}, "id": f"call-{done}"}])
        if os.path.exists(hang_flag):
            time.sleep(120)  # killed here, after two turns and two tool calls
        return "done after two records"

    @tool
    def record(n: int, config: RunnableConfig) -> str:
        '''Record n (a side effect: one line per real call).'''
        key = config["metadata"]["idempotency_key"]
        with open(tools_journal, "a") as out:
            out.write(f"{n} {key}\\n")
        return f"recorded {n}"

    @flow
    def agent() -> str:
        model = FakeChatModel(respond=respond, journal=journal)
        return run_tool_agent(model, [record], task_text, max_steps=5).answer

    print("ANSWER", agent(), flush=True)
    """
)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_killed_agent_replays_finished_turns_and_tool_calls(harness: str, tmp_path: Path) -> None:
    journal, tools, flag = tmp_path / "model.log", tmp_path / "tools.log", tmp_path / "hang"
    flag.touch()
    task_text = f"Record two numbers, then say done. ({uuid.uuid4().hex})"
    args = [sys.executable, "-c", AGENT, task_text, str(journal), str(tools), str(flag)]
    env = {**os.environ, "PREFECT_API_URL": harness}
    first = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(_lines(tools)) < 2:
            assert first.poll() is None, first.stdout.read().decode()[-3000:]  # type: ignore[union-attr]
            time.sleep(0.2)
        time.sleep(1.0)  # the third model turn is under way (and hangs)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    assert len(_lines(journal)) == 2 and len(_lines(tools)) == 2
    keys = [line.split()[1] for line in _lines(tools)]
    assert len(set(keys)) == 2 and all(k.startswith("flowkit-tool-") for k in keys)

    flag.unlink()
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "ANSWER done after two records" in again.stdout
    model_calls, tool_calls = _lines(journal), _lines(tools)
    print(
        f"\nafter the kill: 2 model turns and 2 tool calls done; the re-run made "
        f"{len(model_calls) - 2} model call(s) and {len(tool_calls) - 2} tool call(s)"
    )
    assert len(model_calls) == 3  # only the turn that was cut off ran again
    assert tool_calls == [f"{n} {key}" for n, key in zip((1, 2), keys, strict=True)]

"""Plan-and-execute on real Prefect with scripted models: ordering, parallel waves, statuses,
blocked steps, bounded plan repair, and the summary that always runs."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from prefect import flow
from prefect.artifacts import Artifact

from flowkit_prefect.agents.executors import ExecutorRegistry, StepContext
from flowkit_prefect.agents.plan import Plan, PlanStep
from flowkit_prefect.agents.planning import run_plan
from flowkit_prefect.exceptions import ModelOutputError, PlanError
from flowkit_prefect.testing import FakeChatModel
from tests.helpers import run_until_paused


def plan_json(steps: list[dict]) -> str:
    return json.dumps({"steps": steps})


def step(i: str, executor: str = "py", deps: list[str] | None = None, text: str = "") -> dict:
    """A step as the planner writes it: numbered by position, dependencies by number."""
    return {
        "description": text or f"do {i}",
        "executor": executor,
        "depends_on": [int(d.removeprefix("s")) for d in deps or []],
    }


class Recorder:
    """A Python executor that records when each step ran."""

    def __init__(self, fail: set[str] = frozenset(), delay: float = 0.0) -> None:
        self.fail, self.delay = set(fail), delay
        self.log: list[tuple[str, float, float, dict]] = []
        self.lock = threading.Lock()

    def __call__(self, plan_step: PlanStep, context: StepContext) -> str:
        start = time.monotonic()
        time.sleep(self.delay)
        with self.lock:
            self.log.append((plan_step.id, start, time.monotonic(), dict(context.inputs)))
        if plan_step.id in self.fail:
            raise RuntimeError(f"{plan_step.id} broke")
        return f"result of {plan_step.id}"


def _registry(recorder: Recorder) -> ExecutorRegistry:
    registry = ExecutorRegistry()
    registry.register("py", recorder, "run Python")
    return registry


def test_steps_run_in_dependency_order_with_parallel_waves(harness: str) -> None:
    planner = FakeChatModel(
        responses=[
            plan_json([step("s1"), step("s2"), step("s3", deps=["s1", "s2"])]),
            "All three steps completed.",
        ]
    )
    recorder = Recorder(delay=0.5)

    @flow
    def run():
        return run_plan(planner, f"goal {uuid.uuid4().hex}", _registry(recorder))

    result = run()
    assert [s.status for s in result.plan.steps] == ["completed"] * 3
    times = {sid: (start, end) for sid, start, end, _ in recorder.log}
    assert times["s1"][0] < times["s2"][1] and times["s2"][0] < times["s1"][1]  # in parallel
    assert times["s3"][0] >= max(times["s1"][1], times["s2"][1])
    assert recorder.log[-1][3] == {"s1": "result of s1", "s2": "result of s2"}
    assert result.summary == "All three steps completed."
    table = Artifact.get("plan-status")
    assert table is not None and "completed" in str(table.data)


def test_a_failed_step_blocks_its_dependents_and_the_summary_still_runs(harness: str) -> None:
    planner = FakeChatModel(
        responses=[
            plan_json([step("s1"), step("s2", deps=["s1"]), step("s3", deps=["s2"]), step("s4")]),
            "Partial: s1 failed.",
        ]
    )
    recorder = Recorder(fail={"s1"})

    @flow
    def run():
        return run_plan(planner, f"goal {uuid.uuid4().hex}", _registry(recorder), step_retries=1)

    state = run(return_state=True)
    result = state.result()
    statuses = {s.id: s.status for s in result.plan.steps}
    assert statuses == {"s1": "failed", "s2": "blocked", "s3": "blocked", "s4": "completed"}
    graphs = _graph_versions(state.state_details.flow_run_id)  # oldest first
    assert len(graphs) >= 4  # drafted, then before and after each wave
    assert graphs[0].count(":::not_started") == 4
    assert ":::in_progress" in graphs[1]
    final = graphs[-1]
    assert "```mermaid\nflowchart TD" in final
    assert 's_s1["s1: do s1<br/><i>failed</i>"]:::failed' in final
    assert final.count(":::blocked") == 2 and final.count(":::completed") == 1
    assert "s_s1 --> s_s2" in final and "s_s2 --> s_s3" in final
    assert "classDef failed fill:#fee4e2" in final
    assert result.plan.step("s1").attempts == 2  # the per-step retry cap
    assert [sid for sid, *_ in recorder.log].count("s1") == 2
    assert "dependency s1" in result.plan.step("s2").error
    assert "dependency s2" in result.plan.step("s3").error
    assert (result.completed, result.failed, result.blocked) == (1, 1, 2)
    assert result.summary == "Partial: s1 failed."


def _graph_versions(flow_run_id) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    flt = ArtifactFilter(
        key=ArtifactFilterKey(any_=["plan-graph"]),
        flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
    )
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=flt, limit=50)
    return [str(a.data) for a in sorted(artifacts, key=lambda a: a.created or 0)]


def test_the_plan_graph_is_safe_mermaid_for_any_step_text() -> None:
    plan = Plan(
        goal="g",
        steps=[
            PlanStep(id="s1", description='say "hi" & <b>bold</b>\nnow `x`', executor="py"),
            PlanStep(id="s-2", description="x" * 200, executor="py", depends_on=["s1"]),
        ],
    )
    graph = plan.mermaid()
    assert "s_s1[\"s1: say #quot;hi#quot; #amp; #lt;b#gt;bold#lt;/b#gt; now 'x'" in graph
    assert "s_s_2[" in graph and "s_s1 --> s_s_2" in graph
    assert max(len(line) for line in graph.splitlines()) < 140  # long text is cut
    assert "\n" not in graph.split("<br/>")[0].split('["')[1]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (plan_json([]), "at least 1 item"),
        (plan_json([step("s1", deps=["s2"]), step("s2", deps=["s1"])]), "cycle"),
        (plan_json([step("s1", deps=["s9"])]), "Input should be 1, 2"),
        (plan_json([step("s1", deps=["s2"])]), "unknown step"),
        (plan_json([step("s1", deps=["s1"])]), "depends on itself"),
    ],
)
def test_invalid_plans_are_repaired_or_rejected_with_a_clear_error(
    harness: str, bad: str, message: str
) -> None:
    planner = FakeChatModel(responses=[bad])  # repeats the same bad plan forever

    @flow
    def run():
        return run_plan(planner, f"goal {uuid.uuid4().hex}", _registry(Recorder()), plan_repairs=1)

    # A reply the schema rejects is repaired as structured output (ModelOutputError when it
    # stays wrong); a well-formed but unrunnable plan goes back to the planner (PlanError).
    with pytest.raises(ModelOutputError, match=message):
        run()
    assert 2 <= len(planner.calls) <= 3  # bounded repair, no hang
    assert "invalid" in planner.calls[1][-1].text or "not valid" in planner.calls[1][-1].text


def test_a_repaired_plan_runs(harness: str) -> None:
    planner = FakeChatModel(
        responses=[
            plan_json([step("s1", deps=["s1"])]),
            plan_json([step("s1")]),
            "done",
        ]
    )

    @flow
    def run():
        return run_plan(planner, f"goal {uuid.uuid4().hex}", _registry(Recorder()))

    assert run().plan.steps[0].status == "completed"


def test_unknown_executors_cannot_be_planned() -> None:
    plan = Plan(goal="g", steps=[PlanStep(id="s1", description="x", executor="magic")])
    with pytest.raises(PlanError, match="unknown executor 'magic'"):
        plan.check({"llm"})


def test_waves_group_independent_steps() -> None:
    plan = Plan(
        goal="g",
        steps=[
            PlanStep(id="a", description="x"),
            PlanStep(id="b", description="x", depends_on=["a"]),
            PlanStep(id="c", description="x"),
            PlanStep(id="d", description="x", depends_on=["b", "c"]),
        ],
    )
    assert plan.waves() == [["a", "c"], ["b"], ["d"]]


def test_a_person_can_edit_the_plan_before_it_runs(harness: str) -> None:
    from prefect.flow_runs import resume_flow_run

    planner = FakeChatModel(responses=[plan_json([step("s1"), step("s2")]), "Edited plan ran."])
    recorder = Recorder()
    run_name = f"plan-approval-{uuid.uuid4().hex[:8]}"

    @flow(flow_run_name=run_name)
    def run():
        return run_plan(planner, "goal", _registry(recorder), approve_plan=True)

    paused_id, worker, box = run_until_paused(run, run_name)
    assert not recorder.log  # nothing ran before approval
    edited = [{"id": "only", "description": "the one step a person kept", "executor": "py"}]
    resume_flow_run(paused_id, run_input={"approve": True, "steps_json": json.dumps(edited)})
    worker.join(timeout=60)
    result = box["result"]
    assert [s.id for s in result.plan.steps] == ["only"]
    assert [sid for sid, *_ in recorder.log] == ["only"]
    assert result.summary == "Edited plan ran."

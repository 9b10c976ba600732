"""Test-driven code generation (AlphaCodium-style): reflect, choose an approach, write code,
run it against tests in a sandbox, feed the failures back, repeat.

Every model call is an LLM task run named after its stage and every test run a ``run-tests``
task run, so the whole trajectory shows in the Prefect UI; each stage also publishes its output
as an artifact. Each model call carries LangChain run metadata ``flowkit_stage`` (e.g.
``write-code``, ``fix-public``) and ``flowkit_entry_point``, for callbacks and test doubles.
**Test anchors**: a fix that makes a previously passing test fail is rejected, so the solution
never gets worse. Budgets bound the model calls and the fix iterations; the result
is the best solution found, its test report and why the loop stopped.

Example:
    ```python
    from prefect import flow
    from flowkit_prefect import LocalChatModel
    from flowkit_prefect.codegen import CodeProblem, TestCase, generate_code

    @flow
    def solve() -> str:
        problem = CodeProblem(
            statement="Return the sum of two integers.",
            entry_point="add",
            public_tests=[TestCase(name="t1", code="assert add(1, 2) == 3")],
        )
        return generate_code(LocalChatModel(), problem).code
    ```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flowkit_prefect._logging import run_logger
from flowkit_prefect.blocks.chat_models import ChatModelBlock
from flowkit_prefect.codegen import prompts
from flowkit_prefect.codegen._proposed_tests import validate_proposed_tests
from flowkit_prefect.codegen.problem import CodeProblem, assemble_solution, extract_code
from flowkit_prefect.codegen.results import (
    CodeGenOptions,
    CodeGenResult,
    StageRecord,
    StopReason,
    TestRow,
)
from flowkit_prefect.codegen.sandbox import (
    CodeSandbox,
    SandboxReport,
    SubprocessSandbox,
    TestCase,
    TestOutcome,
    run_in_sandbox,
)
from flowkit_prefect.exceptions import ConfigurationError, ModelOutputError
from flowkit_prefect.llm import LLMTaskConfig, invoke_llm


class _OutOfCalls(Exception):
    """The model-call budget is spent."""


@task(name="run-tests", cache_policy=NO_CACHE)
def run_tests(sandbox: CodeSandbox, code: str, tests: list[TestCase]) -> SandboxReport:
    """Run ``code`` against ``tests`` in the sandbox (never in this process); a reply with no
    code fails every test without starting one."""
    if not code.strip():
        return SandboxReport(
            verdict="syntax_error",
            detail="the model's reply contained no code",
            outcomes=[
                TestOutcome(name=t.name, passed=False, error="not run: no code") for t in tests
            ],
            stdout="",
            stderr="",
            wall_seconds=0.0,
        )
    return run_in_sandbox(sandbox, code, tests)


def _score(report: SandboxReport) -> tuple[bool, int]:
    return report.verdict == "ok", sum(o.passed for o in report.outcomes)


def _passing(report: SandboxReport) -> set[str]:
    return {o.name for o in report.outcomes if o.passed}


def _failure_text(report: SandboxReport, tests: Sequence[TestCase], limit: int = 5) -> str:
    by_name = {t.name: t for t in tests}
    lines = []
    if report.verdict in ("syntax_error", "load_error"):
        lines.append(f"The module did not load: {report.detail}")
    elif report.verdict != "ok":
        lines.append(f"The sandbox stopped it ({report.verdict}): {report.detail}")
    failing = [o for o in report.outcomes if not o.passed][:limit]
    for outcome in failing:
        test = by_name.get(outcome.name)
        source = test.code.strip() if test else outcome.name
        lines.append(f"- `{source}` -> {outcome.error or 'failed'}")
    return "\n".join(lines)


class _Run:
    """The state of one generation: the budget spent, the best solution and the stage log."""

    def __init__(
        self,
        model: BaseChatModel | ChatModelBlock,
        problem: CodeProblem,
        sandbox: CodeSandbox,
        options: CodeGenOptions,
        config: LLMTaskConfig | None,
    ) -> None:
        self.model, self.problem, self.sandbox, self.options = model, problem, sandbox, options
        self.config = config or {}
        self.text = problem.to_prompt()
        self.public = [TestCase(name=t.name, code=t.code) for t in problem.public_tests]
        self.generated: list[TestCase] = []
        self.calls = 0
        self.iterations = 0
        self.stages: list[StageRecord] = []
        self.plan = ""
        self.code = ""
        self.report: SandboxReport | None = None
        self.tested: list[TestCase] = []  # the tests ``report`` ran ``code`` against
        self.stop_reason: StopReason | None = None
        self.logger = run_logger("flowkit.codegen")

    def ask(self, stage: str, messages: list[BaseMessage], output_type: Any = None) -> Any:
        """One model call of ``stage`` within the budget (structured repairs count as calls)."""
        if self.calls >= self.options.max_model_calls:
            raise _OutOfCalls
        config: LLMTaskConfig = {**self.config, "task_name": stage}
        # what the call is for, as run metadata (never parsed from the prompt's wording)
        metadata = {"flowkit_stage": stage, "flowkit_entry_point": self.problem.entry_point}
        try:
            result = invoke_llm(
                self.model, messages, output_type=output_type, config=config, metadata=metadata
            )
        except ModelOutputError:
            self.calls += int(config.get("structured_repairs", 2)) + 1
            raise
        self.calls += 1 + result.repairs
        if output_type is not None:
            return output_type.model_validate(result.parsed)
        return result.text

    def record(self, stage: str, status: Literal["done", "skipped", "failed"], detail: str) -> None:
        self.stages.append(StageRecord(stage=stage, status=status, detail=detail))
        self.logger.info("%s: %s %s", stage, status, detail[:200])

    def publish(self, key: str, markdown: str, description: str) -> None:
        create_markdown_artifact(key=key, markdown=markdown, description=description)

    # Stages ------------------------------------------------------------------------------

    def reflect(self) -> None:
        if not self.options.reflect:
            return self.record("reflect", "skipped", "turned off")
        try:
            reflection = self.ask(
                "reflect", prompts.reflect_messages(self.text), prompts.Reflection
            )
        except ModelOutputError as exc:
            return self.record("reflect", "failed", f"no usable reflection: {exc}")
        edge = "\n".join(f"- {case}" for case in reflection.edge_cases) or "- (none named)"
        self.plan = (
            f"Problem summary: {reflection.summary}\nInputs: {reflection.inputs}\n"
            f"Output: {reflection.outputs}\nEdge cases:\n{edge}"
        )
        self.publish("codegen-reflection", f"## Reflection\n\n{self.plan}", "The problem restated")
        self.record("reflect", "done", reflection.summary)

    def choose_approach(self) -> None:
        count = self.options.approaches
        if count == 0:
            return self.record("choose-approach", "skipped", "turned off")
        try:
            proposed = self.ask(
                "propose-approaches",
                prompts.approaches_messages(self.text, self.plan, count),
                prompts.Approaches,
            ).approaches[:count]
            if not proposed:
                return self.record("choose-approach", "failed", "the model proposed nothing")
            index = 1
            reason = "the only candidate"
            if len(proposed) > 1:
                choice = self.ask(
                    "choose-approach",
                    prompts.choice_messages(self.text, proposed),
                    prompts.Choice,
                )
                index = choice.index if 1 <= choice.index <= len(proposed) else 1
                reason = choice.reason
        except ModelOutputError as exc:
            return self.record("choose-approach", "failed", f"no usable approaches: {exc}")
        chosen = proposed[index - 1]
        self.plan += f"\n\nApproach to implement: {chosen.name}: {chosen.idea}"
        listing = "\n".join(
            f"{i}. **{a.name}**{' (chosen)' if i == index else ''}: {a.idea}"
            for i, a in enumerate(proposed, start=1)
        )
        self.publish(
            "codegen-approaches",
            f"## Approaches\n\n{listing}\n\nChosen: **{chosen.name}** — {reason}",
            "Candidate approaches and the chosen one",
        )
        self.record("choose-approach", "done", chosen.name)

    def propose_tests(self) -> None:
        if not self.options.generate_tests:
            return self.record("generate-tests", "skipped", "turned off")
        try:
            proposed = self.ask(
                "generate-tests",
                prompts.tests_messages(
                    self.text, self.problem.entry_point, self.options.max_generated_tests
                ),
                prompts.ProposedTests,
            ).tests
        except ModelOutputError as exc:
            return self.record("generate-tests", "failed", f"no usable tests: {exc}")
        self.generated, rejected = validate_proposed_tests(
            proposed, self.problem.entry_point, self.public, self.options.max_generated_tests
        )
        rows = [f"| `{t.code.splitlines()[-1]}` | accepted |" for t in self.generated]
        rows += [f"| `{label}` | rejected: {why} |" for label, why in rejected]
        self.publish(
            "codegen-generated-tests",
            "## Generated tests\n\n| test | validation |\n|---|---|\n" + "\n".join(rows),
            "Tests proposed by the model and whether they passed validation",
        )
        self.record(
            "generate-tests", "done", f"{len(self.generated)} accepted, {len(rejected)} rejected"
        )

    def candidate(self, reply: str) -> str:
        return assemble_solution(self.problem, extract_code(reply, self.problem.entry_point))

    def initial_code(self) -> None:
        for attempt in range(1, self.options.initial_attempts + 1):
            note = ""
            if self.report is not None:
                ok, passed = _score(self.report)
                note = (
                    f"\n\nAttempt {attempt} of {self.options.initial_attempts}. The previous "
                    + (
                        f"attempt passed {passed} of {len(self.public)} public tests."
                        if ok
                        else f"attempt did not run: {self.report.detail}"
                    )
                )
            reply = self.ask(
                "write-code",
                prompts.code_messages(self.text, self.problem.entry_point, self.plan + note),
            )
            code = self.candidate(reply)
            report = run_tests(self.sandbox, code, self.public)
            if self.report is None or _score(report) > _score(self.report):
                # kept at once, so a budget that runs out later still has the best attempt
                self.code, self.report, self.tested = code, report, self.public
            ok, passed = _score(report)
            if ok and (passed > 0 or not self.public):
                break
        assert self.report is not None
        ok, passed = _score(self.report)
        self.publish(
            "codegen-initial-code",
            f"## Initial code\n\nVerdict `{self.report.verdict}`, {passed} of {len(self.public)} "
            f"public tests pass.\n\n```python\n{self.code}\n```",
            "The first solution",
        )
        self.record("write-code", "done" if ok else "failed", f"{passed}/{len(self.public)}")

    def report_for(self, tests: list[TestCase]) -> SandboxReport:
        """The best code's report on ``tests``: the last one when it ran these tests, else a
        new sandbox run (no code yet fails every test without one)."""
        if self.report is None or self.tested != tests:
            self.report, self.tested = run_tests(self.sandbox, self.code, tests), tests
        return self.report

    def iterate(self, stage: str, tests: list[TestCase]) -> None:
        """Fix the best code against ``tests`` until they pass or the budget ends; a candidate
        that breaks a passing test (an anchor) or passes fewer tests is rejected."""
        report = self.report_for(tests)
        rejected_note = ""
        log: list[str] = []
        while any(not o.passed for o in report.outcomes) or report.verdict != "ok":
            if self.iterations >= self.options.max_iterations:
                self.stop_reason = "iteration_budget"
                break
            self.iterations += 1
            anchors = [t.code.strip() for t in tests if t.name in _passing(report)][:10]
            messages = prompts.fix_messages(
                self.text,
                self.problem.entry_point,
                self.code,
                _failure_text(report, tests) + rejected_note,
                anchors,
            )
            code = self.candidate(self.ask(stage, messages))
            trial = run_tests(self.sandbox, code, tests)
            broken = sorted(_passing(report) - _passing(trial))
            if broken:
                rejected_note = (
                    f"\n(A previous fix was rejected: it made {', '.join(broken)} fail.)"
                )
                log.append(f"{self.iterations}. rejected: broke {', '.join(broken)}")
            elif _score(trial) < _score(report):
                rejected_note = "\n(A previous fix was rejected: it passed fewer tests.)"
                log.append(f"{self.iterations}. rejected: fewer tests pass")
            else:
                self.code, self.report, report, rejected_note = code, trial, trial, ""
                log.append(f"{self.iterations}. accepted: {_score(trial)[1]}/{len(tests)} pass")
        passed = _score(report)[1]
        self.publish(
            f"codegen-{stage}",
            f"## {stage}\n\n{passed} of {len(tests)} tests pass.\n\n"
            + ("\n".join(log) or "No fix needed.")
            + f"\n\n```python\n{self.code}\n```",
            f"Iterations on {len(tests)} tests",
        )
        self.record(stage, "done", f"{passed}/{len(tests)} after {len(log)} fix attempts")


def _rows(report: SandboxReport, kinds: dict[str, Any]) -> list[TestRow]:
    return [
        TestRow(name=o.name, kind=kinds.get(o.name, "public"), passed=o.passed, error=o.error)
        for o in report.outcomes
    ]


def generate_code(
    model: BaseChatModel | ChatModelBlock,
    problem: CodeProblem,
    *,
    sandbox: CodeSandbox | None = None,
    options: CodeGenOptions | None = None,
    config: LLMTaskConfig | None = None,
) -> CodeGenResult:
    """Generate a solution for ``problem`` inside the current flow run (see the module doc).

    ``config`` applies to every model call (retries, timeout, cache...); the cache makes a
    re-run replay the calls it already paid for.
    """
    options = options or CodeGenOptions()
    sandbox = sandbox or SubprocessSandbox()
    if not isinstance(sandbox, CodeSandbox):
        raise ConfigurationError(f"sandbox must be a CodeSandbox block, got {sandbox!r}.")
    run = _Run(model, problem, sandbox, options, config)
    try:
        run.reflect()
        run.choose_approach()
        run.propose_tests()
        run.initial_code()
        run.iterate("fix-public", run.public)
        if run.generated and run.stop_reason is None:
            run.iterate("fix-generated", run.public + run.generated)
    except _OutOfCalls:
        run.stop_reason = "model_call_budget"
        run.record("budget", "failed", f"{options.max_model_calls} model calls spent")
    final = run.report_for(run.public + run.generated)
    kinds = {t.name: "generated" for t in run.generated}
    tests = _rows(final, kinds)
    if run.stop_reason is None:
        if final.verdict != "ok":
            run.stop_reason = "no_valid_code"
        elif not tests:
            run.stop_reason = "no_tests"
        elif all(t.passed for t in tests):
            run.stop_reason = "all_tests_passed"
        else:
            run.stop_reason = "iteration_budget"
    evaluation: list[TestRow] = []
    if problem.hidden_tests:
        hidden = [TestCase(name=t.name, code=t.code) for t in problem.hidden_tests]
        evaluation = [
            row.model_copy(update={"kind": "hidden"})
            for row in _rows(run_tests(sandbox, run.code, hidden), {})
        ]
    result = CodeGenResult(
        task_id=problem.task_id,
        entry_point=problem.entry_point,
        code=run.code,
        verdict=final.verdict,
        stop_reason=run.stop_reason,
        tests=tests,
        evaluation=evaluation,
        model_calls=run.calls,
        iterations=run.iterations,
        stages=run.stages,
    )
    publish_result(result)
    return result


def publish_result(result: CodeGenResult) -> None:
    """The test report as a table artifact and the solution as a markdown artifact."""
    rows = [
        {"test": t.name, "kind": t.kind, "passed": t.passed, "error": (t.error or "")[:300]}
        for t in [*result.tests, *result.evaluation]
    ]
    create_table_artifact(
        key="codegen-test-report", table=rows, description="Every test of the best solution"
    )
    passed = sum(t.passed for t in result.tests)
    hidden = (
        f" Hidden tests: {sum(t.passed for t in result.evaluation)} of "
        f"{len(result.evaluation)} pass."
        if result.evaluation
        else ""
    )
    create_markdown_artifact(
        key="codegen-result",
        markdown=(
            f"## Code generation: `{result.entry_point}`\n\n"
            f"Stopped: **{result.stop_reason}** after {result.model_calls} model calls and "
            f"{result.iterations} fix iterations. Verdict `{result.verdict}`; {passed} of "
            f"{len(result.tests)} tests pass.{hidden}\n\n```python\n{result.code}\n```"
        ),
        description="The best solution and why the loop stopped",
    )

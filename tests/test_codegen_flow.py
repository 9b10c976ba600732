"""The code-generation loop for real: Prefect task runs, the subprocess sandbox, artifacts.

The model is a ``ScriptedCoder`` (our deterministic chat model): it returns scripted code, the
next version only once the loop asks for a fix (the ``flowkit_stage`` run metadata), so the
tests check what the loop does with the sandbox's reports: converge, reject regressions (test
anchors), respect budgets.
"""

from __future__ import annotations

import uuid

import pytest
from prefect import flow
from prefect.artifacts import Artifact

from flowkit_prefect.codegen import (
    CodeGenOptions,
    CodeGenResult,
    CodeProblem,
    SubprocessSandbox,
    TestCase,
    generate_code,
    validate_proposed_tests,
)
from flowkit_prefect.codegen.prompts import ProposedTest
from flowkit_prefect.exceptions import ConfigurationError
from flowkit_prefect.flows.code_generation import build_problem
from flowkit_prefect.testing import ScriptedCoder

QUICK = CodeGenOptions(reflect=False, approaches=0, generate_tests=False)


def _problem(entry: str, tests: list[str], hidden: list[str] | None = None) -> CodeProblem:
    return CodeProblem(
        statement=f"Return the sum of a and b. ({uuid.uuid4().hex[:6]})",
        entry_point=entry,
        public_tests=[TestCase(name=f"t{i}", code=c) for i, c in enumerate(tests, start=1)],
        hidden_tests=[TestCase(name=f"h{i}", code=c) for i, c in enumerate(hidden or [], 1)],
    )


def _solve(
    model: ScriptedCoder,
    problem: CodeProblem,
    options: CodeGenOptions = QUICK,
    sandbox: SubprocessSandbox | None = None,
) -> CodeGenResult:
    @flow
    def solve() -> CodeGenResult:
        return generate_code(
            model, problem, options=options, sandbox=sandbox, config={"cache": False}
        )

    return solve()


ADD_TESTS = ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(-1, 1) == 0"]


def test_a_failure_report_leads_to_the_right_solution(harness: str) -> None:
    model = ScriptedCoder(
        solutions={"add": ["def add(a, b):\n    return a - b", "def add(a, b):\n    return a + b"]}
    )
    result = _solve(model, _problem("add", ADD_TESTS, hidden=["assert add(10, 5) == 15"]))
    assert result.stop_reason == "all_tests_passed"
    assert result.iterations == 1
    assert "a + b" in result.code
    assert [t.passed for t in result.tests] == [True, True, True]
    assert result.evaluation_passed is True
    # the fix request carried the failing test and its error
    fix_prompt = model.calls[-1][-1].text
    assert "assert add(1, 2) == 3" in fix_prompt and "fails these tests" in fix_prompt
    # every model call says what it is for in its run metadata (the test double relies on it)
    stages = [(m["flowkit_stage"], m["flowkit_entry_point"]) for m in model.call_metadata]
    assert stages == [("write-code", "add"), ("fix-public", "add")]
    # hidden tests are never shown to the model
    assert not any("add(10, 5)" in m.text for call in model.calls for m in call)
    report = Artifact.get("codegen-test-report")
    assert report is not None and '"h1"' in str(report.data) and '"t3"' in str(report.data)


def test_a_fix_that_breaks_a_passing_test_is_rejected(harness: str) -> None:
    partly = "def add(a, b):\n    return a + b if a >= 0 else 99"  # passes t1, t2; fails t3
    regression = "def add(a, b):\n    return 0"  # passes t2, t3: breaks t1 (an anchor)
    right = "def add(a, b):\n    return a + b"
    model = ScriptedCoder(solutions={"add": [partly, regression, right]})
    result = _solve(model, _problem("add", ADD_TESTS))
    assert result.stop_reason == "all_tests_passed"
    assert result.iterations == 2
    assert result.code.strip().endswith("return a + b")
    second_fix = model.calls[-1][-1].text
    assert "rejected" in second_fix and "t1" in second_fix
    stage = next(s for s in result.stages if s.stage == "fix-public")
    assert "2 fix attempts" in stage.detail


def test_budgets_stop_the_loop_with_the_best_solution(harness: str) -> None:
    wrong = "def add(a, b):\n    return a - b"  # passes t2 only, forever
    model = ScriptedCoder(solutions={"add": [wrong]})
    by_iterations = _solve(
        model, _problem("add", ADD_TESTS), QUICK.model_copy(update={"max_iterations": 2})
    )
    assert by_iterations.stop_reason == "iteration_budget"
    assert by_iterations.iterations == 2
    assert [t.passed for t in by_iterations.tests] == [False, True, False]

    by_calls = _solve(
        ScriptedCoder(solutions={"add": [wrong]}),
        _problem("add", ADD_TESTS),
        QUICK.model_copy(update={"max_model_calls": 2}),
    )
    assert by_calls.stop_reason == "model_call_budget"
    assert by_calls.model_calls == 2
    assert "a - b" in by_calls.code


def test_hostile_code_gets_a_verdict_and_the_run_goes_on(harness: str) -> None:
    loop = "def add(a, b):\n    while True:\n        pass"
    model = ScriptedCoder(solutions={"add": [loop, "def add(a, b):\n    return a + b"]})
    quick_kill = SubprocessSandbox(test_timeout_seconds=0.5, wall_seconds=5)
    result = _solve(model, _problem("add", ADD_TESTS), sandbox=quick_kill)
    assert result.stop_reason == "all_tests_passed"
    # three first attempts spun until killed; the failure report then led to the fix
    assert result.model_calls == 4 and result.iterations == 1
    initial = Artifact.get("codegen-initial-code")
    assert initial is not None and "0 of 3" in str(initial.data)


def test_all_stages_run_and_publish_artifacts(harness: str) -> None:
    model = ScriptedCoder(
        solutions={"add": ["def add(a, b):\n    return a - b", "def add(a, b):\n    return a + b"]},
        tests=[
            {"call": "add(2, 2)", "expected": "4"},
            {"call": "add(1, 2)", "expected": "4"},  # contradicts a public test: rejected
            {"call": "sub(1, 2)", "expected": "-1"},  # not the entry point: rejected
        ],
    )
    result = _solve(model, _problem("add", ADD_TESTS), CodeGenOptions())
    assert result.stop_reason == "all_tests_passed"
    assert [s.stage for s in result.stages][:3] == ["reflect", "choose-approach", "generate-tests"]
    assert [t.kind for t in result.tests].count("generated") == 1
    for key in ("codegen-reflection", "codegen-approaches", "codegen-generated-tests"):
        assert Artifact.get(key) is not None, key
    generated = Artifact.get("codegen-generated-tests")
    assert generated is not None and "contradicts a public test" in str(generated.data)


def test_generated_tests_are_validated() -> None:
    public = [TestCase(name="t1", code="assert add(1, 2) == 3")]
    proposed = [
        ProposedTest(call="add(2, 3)", expected="5"),
        ProposedTest(call="add(2, 3)", expected="5"),  # duplicate
        ProposedTest(call="add(1, 2)", expected="4"),  # contradicts t1
        ProposedTest(call="add(1, 2)", expected="3"),  # same as t1
        ProposedTest(call="add(__import__('os').getpid(), 1)", expected="1"),  # not literal
        ProposedTest(call="add(1,", expected="1"),  # syntax
        ProposedTest(call="add(0.1, 0.2)", expected="0.3"),  # float: isclose
        ProposedTest(call="print(1)", expected="None"),
    ]
    accepted, rejected = validate_proposed_tests(proposed, "add", public, limit=5)
    assert [t.code.splitlines()[-1] for t in accepted] == [
        "assert add(2, 3) == 5",
        "assert math.isclose(add(0.1, 0.2), 0.3, rel_tol=1e-6)",
    ]
    reasons = [why for _, why in rejected]
    assert reasons[:3] == ["duplicate", "contradicts a public test", "already a public test"]
    assert "arguments must be literals" in reasons and "not a call of add" in reasons
    assert any(r.startswith("not valid Python") for r in reasons)


def test_the_template_takes_exactly_one_problem() -> None:
    with pytest.raises(ConfigurationError, match="exactly one problem"):
        build_problem("", "", None, "", None, None)
    with pytest.raises(ConfigurationError, match="exactly one problem"):
        build_problem("Add.", "add", None, "", {"task_id": "x"}, None)
    problem = build_problem("Add.", "add", ["assert add(1, 2) == 3"], "", None, None)
    assert [t.code for t in problem.public_tests] == ["assert add(1, 2) == 3"]

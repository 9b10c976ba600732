"""What the code-generation stages ask the model, and the structured replies they expect."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field

SYSTEM = (
    "You are a careful Python programmer. You solve one programming problem at a time, "
    "using only the Python standard library."
)


class Reflection(BaseModel):
    """The problem restated: what goes in, what comes out, what can go wrong."""

    summary: str = Field(description="The problem in your own words, in one or two sentences.")
    inputs: str = Field(description="The inputs and their types.")
    outputs: str = Field(description="The output and its type.")
    edge_cases: list[str] = Field(default_factory=list, description="Tricky cases to handle.")


class Approach(BaseModel):
    """One way to solve the problem."""

    name: str = Field(description="A short name, e.g. 'two pointers'.")
    idea: str = Field(description="How it works, in two or three sentences.")


class Approaches(BaseModel):
    """A few candidate approaches."""

    approaches: list[Approach] = Field(description="Different approaches, simplest first.")


class Choice(BaseModel):
    """The approach to implement and why."""

    index: int = Field(description="The number of the chosen approach (1 = the first).")
    reason: str = Field(default="", description="Why it is the most likely to be correct.")


class ProposedTest(BaseModel):
    """One test case: a call of the function and the exact value it must return."""

    call: str = Field(description="A Python call of the function, e.g. add(1, 2).")
    expected: str = Field(description="The expected return value as a Python literal, e.g. 3.")


class ProposedTests(BaseModel):
    """Extra tests the model proposes, beyond the public ones."""

    tests: list[ProposedTest] = Field(description="Test cases covering the edge cases.")


def _problem_block(problem_text: str) -> str:
    return f"<problem>\n{problem_text}\n</problem>"


def reflect_messages(problem_text: str) -> list[BaseMessage]:
    """Ask for a reflection on the problem."""
    return [
        SystemMessage(SYSTEM),
        HumanMessage(
            f"{_problem_block(problem_text)}\n\nReflect on this problem before writing code: "
            "restate it, describe the inputs and the output, and list the edge cases."
        ),
    ]


def approaches_messages(problem_text: str, reflection: str, count: int) -> list[BaseMessage]:
    """Ask for up to ``count`` candidate approaches."""
    return [
        SystemMessage(SYSTEM),
        HumanMessage(
            f"{_problem_block(problem_text)}\n\n{reflection}\n\nPropose up to {count} different "
            "approaches to solve it, simplest first. Do not write code yet."
        ),
    ]


def choice_messages(problem_text: str, approaches: Sequence[Approach]) -> list[BaseMessage]:
    """Ask which approach to implement."""
    listing = "\n".join(f"{i}. {a.name}: {a.idea}" for i, a in enumerate(approaches, start=1))
    return [
        SystemMessage(SYSTEM),
        HumanMessage(
            f"{_problem_block(problem_text)}\n\nCandidate approaches:\n{listing}\n\nChoose the "
            "approach most likely to be correct on every input, and say why."
        ),
    ]


def tests_messages(problem_text: str, entry_point: str, count: int) -> list[BaseMessage]:
    """Ask for up to ``count`` extra test cases."""
    return [
        SystemMessage(SYSTEM),
        HumanMessage(
            f"{_problem_block(problem_text)}\n\nWrite up to {count} additional test cases for "
            f"`{entry_point}`, each a call and the exact expected return value as a Python "
            "literal. Cover the edge cases; be sure of every expected value."
        ),
    ]


def code_messages(problem_text: str, entry_point: str, plan: str) -> list[BaseMessage]:
    """Ask for a first solution."""
    return [
        SystemMessage(SYSTEM),
        HumanMessage(
            f"{_problem_block(problem_text)}\n\n{plan}\n\nWrite the complete solution: a Python "
            f"module that defines `{entry_point}` (with the imports it needs). Reply with one "
            "```python code block and nothing else."
        ),
    ]


def fix_messages(
    problem_text: str, entry_point: str, code: str, failures: str, anchors: Sequence[str]
) -> list[BaseMessage]:
    """Ask for a fix of ``code`` given the failing tests (and tests that must keep passing)."""
    keep = (
        "\n\nThese tests pass now and must keep passing:\n" + "\n".join(anchors) if anchors else ""
    )
    return [
        SystemMessage(SYSTEM),
        HumanMessage(
            f"{_problem_block(problem_text)}\n\nThis solution:\n```python\n{code}\n```\n\nfails "
            f"these tests:\n{failures}{keep}\n\nFind the mistake and reply with the complete "
            f"corrected module defining `{entry_point}`, in one ```python code block."
        ),
    ]

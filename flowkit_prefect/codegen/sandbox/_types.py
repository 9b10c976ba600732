"""What a sandbox run takes and gives back: tests, their outcomes, the report and its verdict.

Plain pydantic models with no process machinery, so prompts, the engine and callers can use
them without importing the backends.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field, computed_field

__all__ = ["SandboxReport", "TestCase", "TestOutcome", "Verdict"]

Verdict = Literal[
    "ok",
    "syntax_error",
    "load_error",
    "forbidden",
    "timeout",
    "memory_limit",
    "output_limit",
    "process_limit",
    "crashed",
]


class TestCase(BaseModel):
    """One test: Python statements run after the candidate module, in a copy of its namespace."""

    __test__: ClassVar[bool] = False  # not a pytest test class

    name: str = Field(description="A unique name, shown in the outcome.")
    code: str = Field(
        description="Statements run against the module's namespace, e.g. 'assert add(1, 2) == 3'."
    )


class TestOutcome(BaseModel):
    """How one test went."""

    __test__: ClassVar[bool] = False

    name: str
    passed: bool
    error: str | None = Field(
        default=None,
        description="A short reason, e.g. 'AssertionError: assert add(1, 2) == 3 failed: "
        "add(1, 2) returned 4' or 'timed out after 2 s'. None when the test passed.",
    )
    duration_seconds: float = 0.0


class SandboxReport(BaseModel):
    """What happened to one run: a verdict for the run, and one outcome per test."""

    verdict: Verdict = Field(
        description="Why the run ended; see the flowkit_prefect.codegen.sandbox docstring."
    )
    detail: str = Field(description="What happened, in a sentence.")
    outcomes: list[TestOutcome] = Field(
        default_factory=list, description="One per test, in the order given."
    )
    stdout: str = Field(default="", description="The tail of what the code printed.")
    stderr: str = Field(default="", description="The tail of the code's stderr.")
    wall_seconds: float = Field(default=0.0, description="From process start to its exit.")
    isolation: list[str] = Field(
        default_factory=list, description="The isolation layers that were active for this run."
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> int:
        """How many tests passed."""
        return sum(1 for outcome in self.outcomes if outcome.passed)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed(self) -> int:
        """How many tests failed or did not run."""
        return len(self.outcomes) - self.passed

    @computed_field  # type: ignore[prop-decorator]
    @property
    def all_passed(self) -> bool:
        """True when the run was clean (verdict ``ok``) and every test passed."""
        return self.verdict == "ok" and self.failed == 0

"""What a code-generation run is given and gives back: options, per-test rows, stage records and
the result (best code, its report, why the loop stopped)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

StopReason = Literal[
    "all_tests_passed", "no_tests", "iteration_budget", "model_call_budget", "no_valid_code"
]


class CodeGenOptions(BaseModel):
    """Which stages run and how much they may spend."""

    reflect: bool = Field(default=True, description="Restate the problem and its edge cases.")
    approaches: int = Field(
        default=3, ge=0, le=6, description="Candidate approaches to propose (0 skips the stage)."
    )
    generate_tests: bool = Field(
        default=True, description="Ask the model for extra tests (validated before use)."
    )
    max_generated_tests: int = Field(default=6, ge=1, le=30)
    initial_attempts: int = Field(
        default=3, ge=1, le=10, description="Tries at a first solution that loads and passes."
    )
    max_iterations: int = Field(
        default=6, ge=0, le=50, description="Fix attempts in total, public and generated tests."
    )
    max_model_calls: int = Field(
        default=20, ge=1, le=500, description="Model calls in total, repairs included."
    )


class TestRow(BaseModel):
    """One test of the final report."""

    name: str
    kind: Literal["public", "generated", "hidden"]
    passed: bool
    error: str | None = None


class StageRecord(BaseModel):
    """What one stage did."""

    stage: str
    status: Literal["done", "skipped", "failed"]
    detail: str = ""


class CodeGenResult(BaseModel):
    """The best solution found, how it fares on every test, and why the loop stopped."""

    task_id: str | None = None
    entry_point: str
    code: str
    verdict: str = Field(description="The sandbox verdict of the best solution's last run.")
    stop_reason: StopReason
    tests: list[TestRow] = Field(description="Public and accepted generated tests.")
    evaluation: list[TestRow] = Field(
        default_factory=list, description="Hidden tests: run once at the end, never shown."
    )
    model_calls: int
    iterations: int
    stages: list[StageRecord]

    @property
    def public_passed(self) -> bool:
        """Every public test passes."""
        return all(t.passed for t in self.tests if t.kind == "public")

    @property
    def evaluation_passed(self) -> bool | None:
        """Every hidden test passes (None when there were none)."""
        return all(t.passed for t in self.evaluation) if self.evaluation else None

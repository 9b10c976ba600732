"""The suite drafter's data: what the model proposes, and the draft made of it.

Separate from ``drafting`` so vetting and rendering share them; import them from ``drafting``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator


class ProposedExpectation(BaseModel):
    """One expectation as the model proposes it."""

    type: str = Field(description="GX expectation name, e.g. expect_column_values_to_not_be_null")
    kwargs_json: str = Field(
        description='The kwargs as a JSON object in a string, e.g. "{\\"column\\": \\"id\\"}"'
    )
    severity: Literal["error", "warning"] = Field(
        description='"error": bad data must stop the pipeline; "warning": worth a look'
    )
    rationale: str = Field(description="Why this check should hold for the data")

    @field_validator("kwargs_json", mode="before")
    @classmethod
    def _encode_object(cls, value: Any) -> Any:
        """Accept an object where a JSON string is asked for."""
        return json.dumps(value) if isinstance(value, dict) else value


class SuiteProposal(BaseModel):
    """The model's whole reply."""

    expectations: list[ProposedExpectation] = Field(
        description="Proposed expectations, most important first"
    )


class DraftedExpectation(BaseModel):
    """A proposal GX accepts, with what the sample itself says about it."""

    type: str
    kwargs: dict[str, Any]
    severity: Literal["error", "warning"]
    rationale: str
    sample_passes: bool
    sample_note: str = Field(default="", description="What GX observed on the sample, if failed.")


class RejectedExpectation(BaseModel):
    """A proposal left out of the suite, and why."""

    type: str
    kwargs: dict[str, Any] | str = Field(description="As proposed (the raw text if not JSON).")
    reason: str


class SuiteDraft(BaseModel):
    """A drafted suite: always a draft, for a person to review before any use."""

    name: str
    status: Literal["draft"] = "draft"
    suite: dict[str, Any] = Field(description="ExpectationSuite JSON of the accepted proposals.")
    accepted: list[DraftedExpectation] = Field(default_factory=list)
    rejected: list[RejectedExpectation] = Field(default_factory=list)
    model: str
    path: str | None = Field(default=None, description="Where the draft JSON was written.")

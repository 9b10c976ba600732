"""What a validation checkpoint reports: one row per expectation, schema drift, the row split."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["error", "warning"]
"""Per expectation, from its ``meta``: ``{"severity": "warning"}``; the default is "error"."""

Policy = Literal["fail", "quarantine", "warn"]
"""What a checkpoint does when an error-severity expectation fails."""

DriftPolicy = Literal["warn", "fail"]
"""What a checkpoint does when the data's schema differs from the snapshot."""

FAILED_COLUMN = "_flowkit_failed"
"""Column added to quarantined rows: the "; "-joined labels of the expectations each row failed."""


class ExpectationRow(BaseModel):
    """The outcome of one expectation, JSON-safe (it goes into artifacts)."""

    expectation: str = Field(description="Type and column, e.g. 'expect_..._between(amount)'.")
    column: str | None = Field(default=None, description="The column checked, if any.")
    severity: Severity
    success: bool
    observed_value: Any = Field(
        default=None,
        description="GX's observed value; for row-level checks up to 5 distinct unexpected values.",
    )
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    row_level: bool = Field(
        default=False, description="True when failing rows are known (a column map expectation)."
    )


class SchemaDrift(BaseModel):
    """How the data's columns differ from the schema snapshot."""

    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    changed: dict[str, tuple[str, str]] = Field(
        default_factory=dict, description="column -> (snapshot dtype, current dtype)"
    )

    @property
    def drifted(self) -> bool:
        """True when any column was added, removed or changed dtype."""
        return bool(self.added or self.removed or self.changed)

    def describe(self) -> str:
        """One line for logs and reports, e.g. ``added: x; changed: amount int64 -> str``."""
        if not self.drifted:
            return "no drift"
        parts = []
        if self.added:
            parts.append(f"added: {', '.join(self.added)}")
        if self.removed:
            parts.append(f"removed: {', '.join(self.removed)}")
        if self.changed:
            changes = ", ".join(f"{col} {old} -> {new}" for col, (old, new) in self.changed.items())
            parts.append(f"changed: {changes}")
        return "; ".join(parts)


class MonitorResult(BaseModel):
    """One monitor's judgement of one batch (of one column, for per-column monitors)."""

    monitor: str = Field(description="volume, null_rate, distribution or freshness.")
    column: str | None = None
    severity: Severity
    status: Literal["ok", "anomaly", "no history"]
    detail: str
    observed: float | None = Field(default=None, description="The batch's value.")
    baseline: float | None = Field(default=None, description="The history's median, or limit.")

    @property
    def anomalous(self) -> bool:
        """True when the batch does not look like the history."""
        return self.status == "anomaly"

    @property
    def label(self) -> str:
        """``monitor(column)`` or ``monitor``."""
        return f"{self.monitor}({self.column})" if self.column else self.monitor


class CheckpointSummary(BaseModel):
    """A checkpoint's outcome without the rows: small and JSON-serializable (for flow results,
    artifacts and events)."""

    name: str
    success: bool = Field(description="No error-severity expectation failed.")
    policy: Policy
    input_rows: int
    valid_rows: int
    quarantined_rows: int
    expectations: list[ExpectationRow]
    errors: int = Field(description="Failed error-severity expectations.")
    warnings: int = Field(description="Failed warning-severity expectations.")
    drift: SchemaDrift | None = None
    data_docs: str | None = Field(default=None, description="Path of the Data Docs index.html.")
    monitors: list[MonitorResult] = Field(
        default_factory=list, description="The data-quality monitors' verdicts on this batch."
    )

    @property
    def anomalies(self) -> list[MonitorResult]:
        """The monitors that flagged this batch."""
        return [result for result in self.monitors if result.anomalous]

    def failed(self, severity: Severity | None = None) -> list[ExpectationRow]:
        """The failed expectations, optionally of one severity only."""
        return [
            row
            for row in self.expectations
            if not row.success and (severity is None or row.severity == severity)
        ]


class CheckpointResult(CheckpointSummary):
    """Everything a checkpoint decided, with the valid and quarantined rows.

    ``valid`` and ``quarantined`` keep the input's index; ``quarantined`` has one more column,
    ``_flowkit_failed``. ``len(valid) + len(quarantined) == input_rows`` always holds.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    valid: pd.DataFrame
    quarantined: pd.DataFrame

    def summary(self) -> CheckpointSummary:
        """The outcome without the rows."""
        return CheckpointSummary.model_validate(self.model_dump(exclude={"valid", "quarantined"}))


def json_safe(value: Any) -> Any:
    """``value`` with numpy/pandas scalars, NaN, timestamps and tuples made JSON-safe."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        return [json_safe(item) for item in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, dt.datetime | dt.date | dt.time | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)

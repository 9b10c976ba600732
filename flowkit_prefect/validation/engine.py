"""Run a suite with Great Expectations and read its results: which rows failed which check.

GX gets a positional (0..n-1) index, so ``unexpected_index_list`` holds row positions whatever
index the caller's DataFrame has. Each run uses its own ephemeral context (in memory, no
progress bars, no analytics), so concurrent checkpoints share nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.core.expectation_validation_result import (
    ExpectationSuiteValidationResult,
    ExpectationValidationResult,
)
from great_expectations.data_context.data_context.abstract_data_context import (
    AbstractDataContext,
)
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)

try:  # the engine of ValidationDefinition.run and Batch.validate; not in GX's public API
    from great_expectations.validator.v1_validator import Validator
except ImportError:  # a GX release that moved it: use the public path
    Validator = None

from flowkit_prefect.exceptions import ExpectationRunError
from flowkit_prefect.validation.results import ExpectationRow, json_safe
from flowkit_prefect.validation.suites import (
    columns_of,
    label_of,
    severity_of,
    working_copy,
)

# COMPLETE is the only format with unexpected_index_list (the failing rows); at 1M rows it
# costs GX no more than the default SUMMARY. The index query string is not needed.
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "partial_unexpected_count": 20,
    "return_unexpected_index_query": False,
}
SAMPLE_VALUES = 5


@dataclass
class GXRun:
    """One GX validation: the context and batch id (for Data Docs), the suite and its result."""

    context: AbstractDataContext
    batch_id: str | None
    suite: gx.ExpectationSuite
    result: ExpectationSuiteValidationResult
    stored: bool = False
    """True when the result is already in the context's validation results store."""


@dataclass
class Outcome:
    """The results, read: report rows in suite order and the failing row positions."""

    rows: list[ExpectationRow]
    row_failures: list[tuple[str, np.ndarray]] = field(default_factory=list)
    """(label, row positions) of error-severity row-level checks with unexpected rows."""


def new_context() -> AbstractDataContext:
    """An in-memory GX context without progress bars or analytics."""
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def run_suite(data: pd.DataFrame, suite: gx.ExpectationSuite, name: str = "data") -> GXRun:
    """Validate ``data`` (which must have a positional index) against ``suite``.

    Runs GX's v1 ``Validator`` on a whole-dataframe batch definition: the engine of
    ``ValidationDefinition.run``, without storing the result (GX serializes a COMPLETE result
    for its store, ~0.4 s at 1M rows; Data Docs store it only when asked). The documented
    ``batch_definition.get_batch(...).validate(...)`` fetches the batch twice and so hashes
    the whole frame twice for its fingerprint.
    """
    context = new_context()
    batch_definition = (
        context.data_sources.add_pandas("flowkit")
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("whole")
    )
    work = working_copy(suite)
    batch_parameters = {"dataframe": data}
    if Validator is None:
        stored = context.suites.add(work)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch_definition, suite=stored)
        )
        result = definition.run(batch_parameters=batch_parameters, result_format=RESULT_FORMAT)
        return GXRun(context, result.batch_id, stored, result, stored=True)
    validator = Validator(
        batch_definition=batch_definition,
        batch_parameters=batch_parameters,
        result_format=RESULT_FORMAT,
    )
    result = validator.validate_expectation_suite(work)
    return GXRun(context=context, batch_id=validator.active_batch_id, suite=work, result=result)


def interpret(run: GXRun, data: pd.DataFrame) -> Outcome:
    """Report rows in suite order, and the failing rows of error-severity row-level checks.

    Raises ``ExpectationRunError`` when GX could not evaluate an expectation (GX itself only
    marks it failed and carries on).
    """
    expectations = run.suite.expectations
    labels = _unique_labels([label_of(expectation) for expectation in expectations])
    positions = {expectation.id: number for number, expectation in enumerate(expectations)}
    by_position: dict[int, ExpectationValidationResult] = {}
    for item in run.result.results:  # GX gives every result of a suite run its configuration
        if item.expectation_config is not None:
            by_position[positions[item.expectation_config.id]] = item
    outcome = Outcome(rows=[])
    problems: list[str] = []
    for position, expectation in enumerate(expectations):
        item = by_position[position]
        label, severity = labels[position], severity_of(expectation)
        columns = columns_of(expectation.configuration.kwargs)
        message = _exception_message(item.exception_info)
        if message is not None:
            problems.append(_explain_run_error(label, columns, message, data))
            continue
        result: dict[str, Any] = dict(item.result or {})
        row_level = "unexpected_index_list" in result
        outcome.rows.append(
            ExpectationRow(
                expectation=label,
                column=columns[0] if len(columns) == 1 else (", ".join(columns) or None),
                severity=severity,
                success=bool(item.success),
                observed_value=_observed(result),
                unexpected_count=_int_or_none(result.get("unexpected_count")),
                unexpected_percent=_float_or_none(result.get("unexpected_percent")),
                row_level=row_level,
            )
        )
        indices = result.get("unexpected_index_list") or []
        if severity == "error" and row_level and len(indices):
            outcome.row_failures.append((label, _positions(indices, len(data), label)))
    if problems:
        raise ExpectationRunError(
            "Great Expectations could not evaluate "
            f"{len(problems)} expectation(s): {' '.join(problems)}"
        )
    return outcome


def _unique_labels(labels: list[str]) -> list[str]:
    """Number repeated labels (``... #2``) so each quarantine reason names one expectation."""
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return unique


def _exception_message(info: Any) -> str | None:
    """GX's exception message, from either shape of ``exception_info`` (flat, or per metric)."""
    if not isinstance(info, dict):
        return None
    if "raised_exception" in info:
        raised = info.get("raised_exception")
        return str(info.get("exception_message") or "unknown error") if raised else None
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception", True):
            message = value.get("exception_message")
            if message:
                return str(message)
    return None


def _explain_run_error(label: str, columns: list[str], message: str, data: pd.DataFrame) -> str:
    dtypes = ", ".join(f"{c!r} is {data[c].dtype}" for c in columns if c in data.columns)
    on = f" ({dtypes})" if dtypes else ""
    return (
        f"{label}{on}: {message.strip().rstrip('.')}. Give the column the type the expectation "
        "needs before the checkpoint (e.g. pd.to_numeric, pd.to_datetime, or dtypes when reading), "
        "or fix the expectation's kwargs."
    )


def _observed(result: dict[str, Any]) -> Any:
    if "observed_value" in result:
        return json_safe(result["observed_value"])
    if not result.get("unexpected_count"):
        return None
    counts = result.get("partial_unexpected_counts")
    values = (
        [entry.get("value") for entry in counts]
        if counts
        else result.get("partial_unexpected_list") or []
    )
    sample: list[Any] = []
    for value in json_safe(values):
        if value not in sample:
            sample.append(value)
        if len(sample) == SAMPLE_VALUES:
            break
    return sample


def _positions(indices: Any, rows: int, label: str) -> np.ndarray:
    positions = np.asarray(indices)
    if positions.dtype.kind not in "iu" or (
        positions.size and (positions.min() < 0 or positions.max() >= rows)
    ):
        raise ExpectationRunError(
            f"{label}: GX reported unexpected rows that are not row positions of the data "
            f"({positions[:3].tolist()}...); this is a flowkit bug, please report it."
        )
    return positions.astype(np.int64, copy=False)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _float_or_none(value: Any) -> float | None:
    safe = json_safe(value)
    return None if safe is None else float(safe)

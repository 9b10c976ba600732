"""Validation checkpoints: Prefect tasks that sit between the steps of a flow, pass good data on,
quarantine bad rows, and stop the run with a clear report when the data is wrong.

Policies, for error-severity expectations (warnings never stop a run and never move a row):

* ``"fail"``: any failure publishes the report, then raises ``ValidationFailedError``.
* ``"quarantine"``: rows failing a row-level (column map) expectation go to ``quarantined``
  with the labels of what they failed; a failing table-level expectation (row count, column
  set, a mean...) cannot be pinned on rows, so it raises ``ValidationFailedError``.
* ``"warn"``: never raises for failures; every row stays valid; failures are logged.

Example:
    ```python
    from prefect import flow
    from flowkit_prefect.validation import validate_file

    @flow
    def load_orders(path: str):
        checked = validate_file(
            path, "flowkit-validation-suite/orders", name="orders",
            schema_snapshot="schemas/orders.json",
        )
        write_to_warehouse(checked.valid)
        write_to_quarantine(checked.quarantined)
    ```
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_logger, get_run_logger

from flowkit_prefect.exceptions import (
    ConfigurationError,
    DataAnomalyError,
    DataReadError,
    SchemaDriftError,
    ValidationFailedError,
)
from flowkit_prefect.validation import history, report
from flowkit_prefect.validation.drift import compare, read_snapshot, schema_of, write_snapshot
from flowkit_prefect.validation.engine import interpret, run_suite
from flowkit_prefect.validation.metrics import measure
from flowkit_prefect.validation.monitors import MonitorConfig, evaluate
from flowkit_prefect.validation.quarantine import apply_split, plan_split
from flowkit_prefect.validation.readers import read_dataset
from flowkit_prefect.validation.results import (
    FAILED_COLUMN,
    CheckpointResult,
    CheckpointSummary,
    DriftPolicy,
    ExpectationRow,
    MonitorResult,
    Policy,
    SchemaDrift,
)
from flowkit_prefect.validation.suites import SuiteSource, check_columns, load_suite

_POLICIES = ("fail", "quarantine", "warn")
_DRIFT_POLICIES = ("warn", "fail")


def run_checkpoint(
    data: pd.DataFrame,
    suite: SuiteSource,
    *,
    name: str = "checkpoint",
    policy: Policy = "quarantine",
    schema_snapshot: str | Path | None = None,
    drift_policy: DriftPolicy = "warn",
    data_docs_dir: str | Path | None = None,
    monitors: MonitorConfig | Mapping[str, Any] | None = None,
    publish: bool = True,
) -> CheckpointResult:
    """The checkpoint itself, without the task wrapper (``validate_dataframe`` calls this).

    ``monitors`` (else the suite's ``meta.monitors``) compares the batch with the dataset's
    metric history on the Prefect server. ``publish=False`` skips artifacts, events and the
    history, for use outside a Prefect run.
    """
    logger = _logger()
    _check_arguments(data, policy, drift_policy)
    gx_suite = load_suite(suite)
    config = MonitorConfig.parse(
        monitors if monitors is not None else (gx_suite.meta or {}).get("monitors")
    )
    snapshot = read_snapshot(schema_snapshot) if schema_snapshot is not None else None
    check_columns(gx_suite, data.columns, snapshot)

    positional = data.reset_index(drop=True)  # GX reports row positions; `data` is untouched
    run = run_suite(positional, gx_suite, name=report.slugify(name))
    outcome = interpret(run, positional)

    schema = schema_of(data)
    drift = None
    if schema_snapshot is not None:
        drift = compare(snapshot, schema) if snapshot is not None else SchemaDrift()

    errors = [row for row in outcome.rows if not row.success and row.severity == "error"]
    warnings = [row for row in outcome.rows if not row.success and row.severity == "warning"]
    table_errors = [row for row in errors if not row.row_level]
    # warn keeps every row, and so does fail when it passes; when fail fails, the error's
    # result still shows which rows broke which expectation.
    keep_all = policy == "warn" or (policy == "fail" and not errors)
    plan = plan_split(len(data), [] if keep_all else outcome.row_failures)

    summary = CheckpointSummary(
        name=name,
        success=not errors,
        policy=policy,
        input_rows=len(data),
        valid_rows=plan.valid_rows,
        quarantined_rows=plan.quarantined_rows,
        expectations=outcome.rows,
        errors=len(errors),
        warnings=len(warnings),
        drift=drift,
    )
    if data_docs_dir is not None:
        summary.data_docs = _data_docs(run, data_docs_dir, name, logger)
    if config is not None or publish:
        summary.monitors = _monitor(data, name, config, publish)

    failed_by_policy = bool(errors) and (policy == "fail" or bool(table_errors))
    failed_by_drift = drift is not None and drift.drifted and drift_policy == "fail"
    anomalies = [result for result in summary.anomalies if result.severity == "error"]
    verdict = _verdict(summary, failed_by_policy, failed_by_drift, anomalies)
    # Copy the rows on a worker thread while this one (which holds the run context) reports:
    # the report needs only counts, and the copy and the API calls overlap.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowkit-split") as pool:
        frames = pool.submit(apply_split, data, plan)
        _log(logger, summary, verdict, schema_snapshot)
        if publish:
            failed = failed_by_policy or failed_by_drift or bool(anomalies)
            report.publish(summary, failed=failed, verdict=verdict)
        valid, quarantined = frames.result()
    result = CheckpointResult(**dict(summary), valid=valid, quarantined=quarantined)

    if failed_by_policy:
        raise ValidationFailedError(_failure_message(summary, table_errors), result)
    if failed_by_drift and drift is not None:
        raise SchemaDriftError(_drift_message(name, drift, schema_snapshot), drift, result)
    if anomalies:
        raise DataAnomalyError(_anomaly_message(name, anomalies), result)
    if schema_snapshot is not None and snapshot is None:
        write_snapshot(schema_snapshot, schema)
        logger.info("Checkpoint %r recorded the schema snapshot %s", name, schema_snapshot)
    return result


@task(
    name="validation-checkpoint",
    task_run_name="validate-{name}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def validate_dataframe(
    data: pd.DataFrame,
    suite: SuiteSource,
    *,
    name: str = "checkpoint",
    policy: Policy = "quarantine",
    schema_snapshot: str | Path | None = None,
    drift_policy: DriftPolicy = "warn",
    data_docs_dir: str | Path | None = None,
    monitors: MonitorConfig | Mapping[str, Any] | None = None,
) -> CheckpointResult:
    """Validate a DataFrame against a suite and split it into valid and quarantined rows.

    ``suite``: a ``ValidationSuite`` block, a ``"flowkit-validation-suite/<name>"`` reference, a
    suite JSON file, a dict or a ``gx.ExpectationSuite``. Publishes the ``validation-<name>``
    table and ``validation-<name>-summary`` markdown artifacts and ``flowkit.validation.*``
    events; with ``monitors`` (or a suite's ``meta.monitors``) also the metric record and the
    ``validation-<name>-trend`` table. Results are not persisted or cached: frames can be large.
    """
    return run_checkpoint(
        data,
        suite,
        name=name,
        policy=policy,
        schema_snapshot=schema_snapshot,
        drift_policy=drift_policy,
        data_docs_dir=data_docs_dir,
        monitors=monitors,
    )


@task(
    name="validation-checkpoint-file",
    task_run_name="validate-{name}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def validate_file(
    path: str | Path,
    suite: SuiteSource,
    *,
    name: str = "checkpoint",
    policy: Policy = "quarantine",
    schema_snapshot: str | Path | None = None,
    drift_policy: DriftPolicy = "warn",
    data_docs_dir: str | Path | None = None,
    monitors: MonitorConfig | Mapping[str, Any] | None = None,
) -> CheckpointResult:
    """``read_dataset(path)`` (CSV, Parquet, JSON lines), then the ``validate_dataframe`` checks."""
    return run_checkpoint(
        read_dataset(path),
        suite,
        name=name,
        policy=policy,
        schema_snapshot=schema_snapshot,
        drift_policy=drift_policy,
        data_docs_dir=data_docs_dir,
        monitors=monitors,
    )


def _check_arguments(data: Any, policy: str, drift_policy: str) -> None:
    if not isinstance(data, pd.DataFrame):
        raise ConfigurationError(
            f"A checkpoint validates a pandas DataFrame, not a {type(data).__name__}. Read files "
            "with validate_file or read_dataset."
        )
    if policy not in _POLICIES:
        raise ConfigurationError(f"policy {policy!r} is not one of {', '.join(_POLICIES)}.")
    if drift_policy not in _DRIFT_POLICIES:
        raise ConfigurationError(
            f"drift_policy {drift_policy!r} is not one of {', '.join(_DRIFT_POLICIES)}."
        )
    if data.columns.has_duplicates:
        duplicated = sorted({str(c) for c in data.columns[data.columns.duplicated()]})
        raise DataReadError(
            f"The data has duplicate column names {duplicated}. Rename them so that each "
            "column has one name."
        )
    if FAILED_COLUMN in data.columns:
        raise DataReadError(
            f"The data already has a {FAILED_COLUMN!r} column (quarantined rows from another "
            "checkpoint?). Drop it before validating again."
        )
    if not all(isinstance(column, str) for column in data.columns):
        raise DataReadError(
            "Every column name must be a string; rename the others first, e.g. "
            "data.rename(columns=str)."
        )


def _failure_message(summary: CheckpointSummary, table_errors: list[ExpectationRow]) -> str:
    failed = "; ".join(report.describe_failure(row) for row in summary.failed("error"))
    if summary.policy == "fail":
        why = f"{summary.errors} error-severity expectation(s) failed"
    else:
        labels = ", ".join(row.expectation for row in table_errors)
        why = (
            f"table-level expectation(s) {labels} failed; they check the whole table, not "
            "single rows, so no rows can be quarantined for them and the run stops even under "
            "policy 'quarantine'"
        )
    return (
        f"Checkpoint {summary.name!r} failed ({summary.input_rows} rows): {why}. Failed: "
        f"{failed}. See the {report.artifact_location(summary.name)}; the error's `.result` "
        f"holds the rows ({summary.quarantined_rows} failed row-level checks). Fix the data "
        'upstream, or relax the expectation (or set "severity": "warning" in its meta).'
    )


def _drift_message(name: str, drift: SchemaDrift, snapshot: str | Path | None) -> str:
    return (
        f"Checkpoint {name!r}: the data's schema differs from the snapshot {snapshot} "
        f"({drift.describe()}). If the change is intended, delete the snapshot to record the "
        "new schema on the next run; otherwise fix the upstream step. See the "
        f"{report.artifact_location(name)}."
    )


def _monitor(
    data: pd.DataFrame, name: str, config: MonitorConfig | None, publish: bool
) -> list[MonitorResult]:
    """Measure the batch, judge it against the history (when monitors are configured), and
    append it to the history (in a run), so monitors added later have runs to compare with."""
    metrics = measure(data, config.timestamp_column if config else None)
    past = history.read_history(name, config.history) if config and publish else []
    results = evaluate(config, metrics, past) if config else []
    metrics.anomalies = [result.label for result in results if result.anomalous]
    if publish:
        history.record(name, metrics)
        if config:
            history.publish_trend(name, config, metrics, past, results)
    return results


def _anomaly_message(name: str, anomalies: list[MonitorResult]) -> str:
    seen = "; ".join(f"{result.label}: {result.detail}" for result in anomalies)
    return (
        f"Checkpoint {name!r}: the batch does not look like the dataset's recent runs ({seen}). "
        f"See the trend artifact '{history.trend_key(name)}'. Fix the upstream step if the data "
        "is wrong; if the change is real, rerun with the monitor's severity set to 'warning' "
        "(the history adapts as new runs enter it) or widen its threshold."
    )


def _verdict(
    summary: CheckpointSummary,
    failed_by_policy: bool,
    failed_by_drift: bool,
    anomalies: list[MonitorResult],
) -> str:
    """One phrase for logs, artifact descriptions and the summary heading."""
    if failed_by_policy:
        return "FAILED"
    if failed_by_drift:
        return "FAILED (schema drift)"
    if anomalies:
        return f"FAILED (anomaly: {', '.join(result.label for result in anomalies)})"
    held = summary.quarantined_rows
    if summary.errors and summary.policy == "warn":
        return f"PASSED WITH ERRORS ({summary.errors} failed; policy warn keeps every row)"
    if summary.errors:
        return f"QUARANTINED {held} rows ({summary.errors} expectation(s) failed)"
    warned = f", {summary.warnings} warning(s)" if summary.warnings else ""
    if held:  # error expectations that passed under `mostly` still hold their rows back
        return f"PASSED ({held} rows quarantined within 'mostly'{warned})"
    return f"PASSED{f' ({summary.warnings} warning(s))' if summary.warnings else ''}"


def _log(
    logger: logging.Logger | logging.LoggerAdapter,
    summary: CheckpointSummary,
    verdict: str,
    snapshot: str | Path | None,
) -> None:
    failed = summary.failed()
    drift = summary.drift
    drifted = drift is not None and drift.drifted
    level = logging.WARNING if failed or drifted or summary.anomalies else logging.INFO
    logger.log(
        level,
        "Checkpoint %r %s: %d rows in, %d valid, %d quarantined",
        summary.name,
        verdict,
        summary.input_rows,
        summary.valid_rows,
        summary.quarantined_rows,
    )
    for row in failed:
        logger.warning("Checkpoint %r: %s", summary.name, report.describe_failure(row))
    for result in summary.anomalies:
        logger.warning(
            "Checkpoint %r: anomaly [%s] %s: %s",
            summary.name,
            result.severity,
            result.label,
            result.detail,
        )
    if drift is not None and drifted:
        logger.warning(
            "Checkpoint %r: schema drift against %s: %s", summary.name, snapshot, drift.describe()
        )


def _data_docs(run: Any, directory: str | Path, name: str, logger: Any) -> str | None:
    from flowkit_prefect.validation.data_docs import write_data_docs

    try:
        return write_data_docs(run, directory, name)
    except Exception as exc:  # the report must not fail a checkpoint that ran
        logger.warning("Checkpoint %r: Data Docs not written to %s: %s", name, directory, exc)
        return None


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except Exception:  # outside a flow or task run
        return get_logger("flowkit.validation")

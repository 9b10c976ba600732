"""Publish a checkpoint's outcome: a table and a markdown artifact, and Prefect events.

One event per run by outcome (``flowkit.validation.passed``, ``.quarantined``, ``.failed``) and
``flowkit.validation.anomaly`` when a monitor flagged the batch. Events carry counts and names
only, never data values, so automations can react without the event store holding customer data.
"""

from __future__ import annotations

import json
from typing import Any

from flowkit_prefect._artifacts import key_slug
from flowkit_prefect.validation.results import CheckpointSummary, ExpectationRow

EVENT_PASSED = "flowkit.validation.passed"
EVENT_QUARANTINED = "flowkit.validation.quarantined"
EVENT_FAILED = "flowkit.validation.failed"
EVENT_ANOMALY = "flowkit.validation.anomaly"
_OBSERVED_CHARS = 200


def slugify(name: str) -> str:
    """Lowercase letters, digits and dashes (what Prefect allows in artifact keys)."""
    return key_slug(name, "checkpoint")


def table_key(name: str) -> str:
    """Key of the per-expectation table artifact: ``validation-<name>``."""
    return f"validation-{slugify(name)}"


def summary_key(name: str) -> str:
    """Key of the markdown summary artifact: ``validation-<name>-summary``."""
    return f"validation-{slugify(name)}-summary"


def resource_id(name: str) -> str:
    """The event's resource id: ``flowkit.checkpoint.<name>``."""
    return f"flowkit.checkpoint.{slugify(name)}"


def publish(result: CheckpointSummary, *, failed: bool, verdict: str) -> None:
    """Create both artifacts and emit the outcome's event (and the anomaly event)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_table_artifact(
        [table_row(row) for row in result.expectations],
        key=table_key(result.name),
        description=f"Checkpoint {result.name!r}: {verdict}",
    )
    create_markdown_artifact(
        summary_markdown(result, verdict),
        key=summary_key(result.name),
        description=f"Checkpoint {result.name!r}: {verdict}",
    )
    emit(result, failed=failed)


def outcome_event(result: CheckpointSummary, *, failed: bool) -> str:
    """``.failed`` when the checkpoint stopped the run or kept rows that failed errors (policy
    warn); ``.quarantined`` when it set rows aside and the run goes on; else ``.passed``."""
    if failed:
        return EVENT_FAILED
    if result.quarantined_rows:
        return EVENT_QUARANTINED
    return EVENT_FAILED if result.errors else EVENT_PASSED


def emit(result: CheckpointSummary, *, failed: bool) -> None:
    """The checkpoint's events; Prefect relates them to the current flow and task run."""
    from prefect.events import emit_event

    resource = {
        "prefect.resource.id": resource_id(result.name),
        "prefect.resource.name": result.name,
        "flowkit.policy": result.policy,
    }
    emit_event(
        outcome_event(result, failed=failed), resource=resource, payload=event_payload(result)
    )
    anomalies = result.anomalies
    if anomalies:
        emit_event(
            EVENT_ANOMALY,
            resource=resource,
            payload={
                "rows": result.input_rows,
                "anomalies": len(anomalies),
                "monitors": [anomaly.label for anomaly in anomalies],
                "errors": sum(anomaly.severity == "error" for anomaly in anomalies),
            },
        )


def event_payload(result: CheckpointSummary) -> dict[str, int]:
    """Counts only."""
    return {
        "rows": result.input_rows,
        "valid": result.valid_rows,
        "quarantined": result.quarantined_rows,
        "errors": result.errors,
        "warnings": result.warnings,
    }


def table_row(row: ExpectationRow) -> dict[str, Any]:
    """One artifact table row; the observed value is shortened JSON text."""
    return {
        "expectation": row.expectation,
        "severity": row.severity,
        "success": row.success,
        "observed value": _short(row.observed_value),
        "unexpected count": row.unexpected_count,
        "unexpected percent": (
            None if row.unexpected_percent is None else round(row.unexpected_percent, 4)
        ),
    }


def summary_markdown(result: CheckpointSummary, verdict: str) -> str:
    """Pass/fail, row counts, failed expectations, drift and the Data Docs link."""
    lines = [
        f"# Validation checkpoint `{result.name}`: {verdict}",
        "",
        f"Policy **{result.policy}**. Errors failed: **{result.errors}**; "
        f"warnings failed: **{result.warnings}**.",
        "",
        "| rows in | valid | quarantined |",
        "|---:|---:|---:|",
        f"| {result.input_rows} | {result.valid_rows} | {result.quarantined_rows} |",
        "",
    ]
    failed = result.failed()
    if failed:
        lines += ["## Failed expectations", ""]
        lines += [f"- {describe_failure(row)}" for row in failed]
        lines.append("")
    if result.drift is not None:
        lines += ["## Schema drift", "", result.drift.describe(), ""]
    if result.monitors:
        lines += ["## Monitors (against the recent runs)", "", "| monitor | severity | status |"]
        lines += ["|---|---|---|"]
        for monitor in result.monitors:
            status = f"**{monitor.status.upper()}**" if monitor.anomalous else monitor.status
            lines.append(f"| {monitor.label} | {monitor.severity} | {status}: {monitor.detail} |")
        lines.append("")
    if result.data_docs:
        lines += ["## Data Docs", "", f"[{result.data_docs}](file://{result.data_docs})", ""]
    lines.append(f"Per-expectation table: artifact `{table_key(result.name)}`.")
    return "\n".join(lines)


def describe_failure(row: ExpectationRow) -> str:
    """``label [severity]: N unexpected (p%), e.g. [...]`` or ``observed ...``."""
    text = f"{row.expectation} [{row.severity}]"
    if row.unexpected_count is not None:
        percent = f" ({row.unexpected_percent:.2f}%)" if row.unexpected_percent is not None else ""
        text += f": {row.unexpected_count} unexpected{percent}"
        if row.observed_value:
            text += f", e.g. {_short(row.observed_value)}"
    else:
        text += f": observed {_short(row.observed_value)}"
    return text


def _short(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _OBSERVED_CHARS else text[: _OBSERVED_CHARS - 1] + "…"


def artifact_location(name: str) -> str:
    """Where to look: the artifact key, and the flow run's UI page when known."""
    where = f"artifacts '{table_key(name)}' and '{summary_key(name)}'"
    try:
        from prefect.context import FlowRunContext
        from prefect.utilities.urls import url_for

        context = FlowRunContext.get()
        if context and context.flow_run:
            url = url_for("flow-run", obj_id=context.flow_run.id)
            if url:
                return f"{where} on the flow run ({url})"
    except Exception:  # a link is a nicety; never fail the report over it
        pass
    return where

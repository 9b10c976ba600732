"""The metric history of a dataset, kept on the Prefect server as artifacts.

Each checkpoint run appends one table artifact under the key ``validation-<name>-metrics``
(metric, column, value). Prefect keeps every version of a keyed artifact, so the history is the
key's latest versions: shared by every worker, process and container that talks to the same
server, and append-only (two runs at once each add their own record; nothing is overwritten).
The trend artifact ``validation-<name>-trend`` shows the last runs with the anomalies marked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flowkit_prefect._artifacts import table_rows
from flowkit_prefect.validation.metrics import DatasetMetrics
from flowkit_prefect.validation.monitors import MonitorConfig, MonitorResult
from flowkit_prefect.validation.report import slugify

_TREND_RUNS = 10


def metrics_key(name: str) -> str:
    """Key of the per-run metric record: ``validation-<name>-metrics``."""
    return f"validation-{slugify(name)}-metrics"


def trend_key(name: str) -> str:
    """Key of the trend table: ``validation-<name>-trend``."""
    return f"validation-{slugify(name)}-trend"


def read_history(name: str, runs: int) -> list[DatasetMetrics]:
    """The dataset's last ``runs`` metric records, newest first (unreadable ones skipped)."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[metrics_key(name)])),
            sort=ArtifactSort.CREATED_DESC,
            limit=runs,
        )
    history = []
    for artifact in artifacts:
        try:
            history.append(DatasetMetrics.from_rows(table_rows(artifact.data)))
        except (TypeError, ValueError, KeyError):
            continue  # a hand-made artifact under our key: not a record, not history
    return history


def record(name: str, metrics: DatasetMetrics) -> None:
    """Append this run's record (with the labels of the monitors that flagged it)."""
    from prefect.artifacts import create_table_artifact

    create_table_artifact(
        metrics.to_rows(),
        key=metrics_key(name),
        description=(
            f"Metrics of checkpoint {name!r}: {metrics.rows} rows"
            + (f"; anomalies: {', '.join(metrics.anomalies)}" if metrics.anomalies else "")
        ),
    )


def publish_trend(
    name: str,
    config: MonitorConfig,
    current: DatasetMetrics,
    history: Sequence[DatasetMetrics],
    results: Sequence[MonitorResult],
) -> None:
    """The trend table: the last runs' monitored metrics, oldest first, this run last."""
    from prefect.artifacts import create_table_artifact

    past = list(reversed(history[: _TREND_RUNS - 1]))
    rows = [trend_row(config, metrics, None) for metrics in past]
    rows.append(trend_row(config, current, results))
    anomalies = [result.label for result in results if result.anomalous]
    create_table_artifact(
        rows,
        key=trend_key(name),
        description=(
            f"Checkpoint {name!r} over its last {len(rows)} run(s): "
            + (f"ANOMALY in {', '.join(anomalies)}" if anomalies else "no anomaly")
        ),
    )


def trend_row(
    config: MonitorConfig, metrics: DatasetMetrics, results: Sequence[MonitorResult] | None
) -> dict[str, Any]:
    """One run of the trend table: rows, the watched columns' null rates and means, anomalies."""
    row: dict[str, Any] = {
        "measured": metrics.measured_at.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": metrics.rows,
    }
    if config.null_rate:
        for column in config.null_rate.columns or metrics.columns:
            if column in metrics.columns:
                row[f"null % {column}"] = round(100 * metrics.columns[column].null_rate, 2)
    if config.distribution:
        for column in config.distribution.columns or metrics.columns:
            mean = metrics.columns[column].mean if column in metrics.columns else None
            if mean is not None:
                row[f"mean {column}"] = round(mean, 4)
    if config.freshness and metrics.newest is not None:
        row["newest"] = metrics.newest.strftime("%Y-%m-%d %H:%M:%S")
    if results is None:  # an earlier run: its record keeps only which monitors flagged it
        flagged = metrics.anomalies
    else:
        flagged = [f"{r.label}: {r.detail}" for r in results if r.anomalous]
    row["anomaly"] = "ANOMALY " + "; ".join(flagged) if flagged else ""
    return row

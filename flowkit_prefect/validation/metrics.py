"""What a checkpoint measures of every batch, for the monitors to compare over time.

Row count; per column the null rate and distinct count; min / max / mean / standard deviation
of numeric columns; the newest timestamp of a chosen column. Small and JSON-safe: one record per
run goes into the metric history (a Prefect artifact), never the rows themselves.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, cast

import pandas as pd
from pydantic import BaseModel, Field

from flowkit_prefect.exceptions import ConfigurationError


class ColumnMetrics(BaseModel):
    """One column of one batch."""

    null_rate: float = Field(description="Share of missing values, 0 to 1.")
    distinct: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None


class DatasetMetrics(BaseModel):
    """One batch of one dataset, as the monitors see it."""

    rows: int
    columns: dict[str, ColumnMetrics] = Field(default_factory=dict)
    newest: dt.datetime | None = Field(
        default=None, description="Newest value of the freshness column (UTC)."
    )
    measured_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
    anomalies: list[str] = Field(
        default_factory=list, description="The monitors that flagged this batch, by label."
    )

    def to_rows(self) -> list[dict[str, Any]]:
        """Long form (metric, column, value): what the history artifact stores and shows."""
        rows: list[dict[str, Any]] = [{"metric": "rows", "column": "", "value": self.rows}]
        for name, column in self.columns.items():
            for metric, value in column.model_dump().items():
                if value is not None:
                    rows.append({"metric": metric, "column": name, "value": value})
        if self.newest is not None:
            rows.append({"metric": "newest", "column": "", "value": self.newest.isoformat()})
        rows.append({"metric": "measured_at", "column": "", "value": self.measured_at.isoformat()})
        if self.anomalies:
            rows.append({"metric": "anomalies", "column": "", "value": ", ".join(self.anomalies)})
        return rows

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> DatasetMetrics:
        """The inverse of ``to_rows``; ``ValueError`` when the rows are not a metric record."""
        record: dict[str, Any] = {"columns": {}}
        for row in rows:
            metric, column, value = row["metric"], row.get("column") or "", row.get("value")
            if column:
                record["columns"].setdefault(column, {})[metric] = value
            elif metric == "anomalies":
                record[metric] = [label for label in str(value).split(", ") if label]
            else:
                record[metric] = value
        return cls.model_validate(record)


def measure(data: pd.DataFrame, timestamp_column: str | None = None) -> DatasetMetrics:
    """The metrics of one batch. ``timestamp_column`` (parsed as UTC) gives ``newest``."""
    rows = len(data)
    columns: dict[str, ColumnMetrics] = {}
    for name in data.columns:
        series = cast("pd.Series", data[name])
        nulls = int(series.isna().sum())
        metrics = ColumnMetrics(
            null_rate=nulls / rows if rows else 0.0,
            distinct=int(series.nunique(dropna=True)),
        )
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            values = series.dropna().astype(float)
            if len(values):
                metrics.min = _finite(values.min())
                metrics.max = _finite(values.max())
                metrics.mean = _finite(values.mean())
                metrics.std = _finite(values.std(ddof=0))
        columns[str(name)] = metrics
    return DatasetMetrics(
        rows=rows, columns=columns, newest=newest_timestamp(data, timestamp_column)
    )


def newest_timestamp(data: pd.DataFrame, column: str | None) -> dt.datetime | None:
    """The latest timestamp in ``column`` as UTC (naive values are taken as UTC)."""
    if column is None:
        return None
    if column not in data.columns:
        raise ConfigurationError(
            f"The freshness monitor's column {column!r} is not in the data (columns: "
            f"{', '.join(map(str, data.columns))}). Name the column that holds each row's time."
        )
    try:
        parsed = pd.to_datetime(data[column], utc=True, errors="raise", format="mixed")
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"The freshness monitor's column {column!r} holds values that are not timestamps "
            f"({exc}). Use ISO 8601 times, e.g. 2026-12-01T08:00:00Z."
        ) from exc
    newest = parsed.max()
    return None if pd.isna(newest) else newest.to_pydatetime()


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None

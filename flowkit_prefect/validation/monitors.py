"""Data-quality monitors: judge a batch's metrics against the dataset's recent history.

Per-batch expectations say whether a batch is valid on its own; monitors say whether it looks
like the batches before it:

* ``volume``: the row count against the median of the last runs (a robust z-score on the median
  absolute deviation once there are three runs, and a minimum relative change always);
* ``null_rate``: a column's null rate rising above its median by more than ``max_increase``;
* ``distribution``: a numeric column's mean moving from its median by more than ``max_shift``
  typical standard deviations;
* ``freshness``: the newest timestamp of a column older than ``max_age``.

Each monitor has a severity like an expectation: ``"error"`` fails the run, ``"warning"`` reports.
Configure them in a suite's ``meta`` (``{"meta": {"monitors": {...}}}``), on the
``ValidationSuite`` block's ``monitors`` field, or with ``monitors=`` on the checkpoint.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flowkit_prefect.exceptions import ConfigurationError
from flowkit_prefect.validation.metrics import DatasetMetrics
from flowkit_prefect.validation.results import MonitorResult, Severity

_ROBUST = 0.6745  # scales the median absolute deviation to a standard deviation (normal data)
_MIN_RUNS_FOR_SPREAD = 3
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class _Monitor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    severity: Severity = "error"


class VolumeMonitor(_Monitor):
    """A sudden drop or spike in the row count."""

    min_change: float = Field(
        default=0.3, ge=0, description="Relative change from the median that counts (0.3 = 30%)."
    )
    z_threshold: float = Field(
        default=3.5, gt=0, description="Robust z-score that counts, once there are 3+ runs."
    )


class NullRateMonitor(_Monitor):
    """A column's null rate jumping."""

    columns: list[str] | None = Field(default=None, description="Columns watched; all if unset.")
    max_increase: float = Field(default=0.1, ge=0, le=1, description="Absolute rise that counts.")


class DistributionMonitor(_Monitor):
    """A numeric column's mean shifting."""

    columns: list[str] | None = Field(default=None, description="Numeric columns; all if unset.")
    max_shift: float = Field(
        default=1.0, gt=0, description="Shift of the mean, in typical standard deviations."
    )


class FreshnessMonitor(_Monitor):
    """The newest row older than a service-level age."""

    column: str = Field(description="The column holding each row's timestamp.")
    max_age: dt.timedelta = Field(description="e.g. '24h', '90m', '2d' or seconds.")

    @field_validator("max_age", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str) and (match := _DURATION.fullmatch(value)):
            return dt.timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
        return value


class MonitorConfig(BaseModel):
    """Which monitors a checkpoint runs, and over how many past runs."""

    model_config = ConfigDict(extra="forbid")

    history: int = Field(default=20, ge=1, le=200, description="Past runs compared against.")
    volume: VolumeMonitor | None = None
    null_rate: NullRateMonitor | None = None
    distribution: DistributionMonitor | None = None
    freshness: FreshnessMonitor | None = None

    @classmethod
    def parse(cls, value: MonitorConfig | Mapping[str, Any] | None) -> MonitorConfig | None:
        """A config from a dict (``{}`` for a monitor: its defaults); errors say what to fix."""
        if value is None or isinstance(value, MonitorConfig):
            return value
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                f"monitors must be an object, not a {type(value).__name__}: "
                '{"volume": {"min_change": 0.3}, "freshness": {"column": "ts", "max_age": "24h"}}.'
            )
        try:
            return cls.model_validate(dict(value))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors()
            )
            raise ConfigurationError(
                f"Invalid monitors configuration: {problems}. Known monitors: volume, null_rate, "
                "distribution, freshness (each with an optional severity 'error' or 'warning')."
            ) from exc

    @property
    def timestamp_column(self) -> str | None:
        """The column whose newest value the metrics record (for ``freshness``)."""
        return self.freshness.column if self.freshness else None


def evaluate(
    config: MonitorConfig,
    current: DatasetMetrics,
    history: Sequence[DatasetMetrics],
    now: dt.datetime | None = None,
) -> list[MonitorResult]:
    """Every configured monitor's verdict on ``current``; ``history`` is newest first."""
    results: list[MonitorResult] = []
    if config.volume:
        results.append(_volume(config.volume, current, history))
    if config.null_rate:
        results.extend(_null_rate(config.null_rate, current, history))
    if config.distribution:
        results.extend(_distribution(config.distribution, current, history))
    if config.freshness:
        results.append(_freshness(config.freshness, current, now or dt.datetime.now(dt.UTC)))
    return results


def _volume(
    monitor: VolumeMonitor, current: DatasetMetrics, history: Sequence[DatasetMetrics]
) -> MonitorResult:
    result = partial(
        MonitorResult, monitor="volume", severity=monitor.severity, observed=float(current.rows)
    )
    if not history:
        return result(status="no history", detail="first run: nothing to compare")
    counts = [float(past.rows) for past in history]
    median = statistics.median(counts)
    change = (current.rows - median) / max(median, 1.0)
    anomalous = abs(change) >= monitor.min_change
    spread = ""
    if len(counts) >= _MIN_RUNS_FOR_SPREAD:
        z = _robust_z(current.rows, counts, median)
        anomalous = anomalous and abs(z) >= monitor.z_threshold
        spread = f", robust z {z:+.1f}" if math.isfinite(z) else ", history constant"
    detail = (
        f"{current.rows} rows against a median of {median:g} over {len(counts)} run(s) "
        f"({change:+.0%}{spread})"
    )
    return result(status="anomaly" if anomalous else "ok", detail=detail, baseline=median)


def _null_rate(
    monitor: NullRateMonitor, current: DatasetMetrics, history: Sequence[DatasetMetrics]
) -> list[MonitorResult]:
    results = []
    for column in _columns(monitor.columns, current, "null_rate"):
        rate = current.columns[column].null_rate
        past = [h.columns[column].null_rate for h in history if column in h.columns]
        result = partial(
            MonitorResult,
            monitor="null_rate",
            column=column,
            severity=monitor.severity,
            observed=rate,
        )
        if not past:
            results.append(result(status="no history", detail="no earlier runs"))
            continue
        median = statistics.median(past)
        anomalous = rate - median > monitor.max_increase
        detail = f"null rate {rate:.1%} against a median of {median:.1%} over {len(past)} run(s)"
        results.append(
            result(status="anomaly" if anomalous else "ok", detail=detail, baseline=median)
        )
    return results


def _distribution(
    monitor: DistributionMonitor, current: DatasetMetrics, history: Sequence[DatasetMetrics]
) -> list[MonitorResult]:
    results = []
    for column in _columns(monitor.columns, current, "distribution"):
        now = current.columns[column]
        if now.mean is None:
            if monitor.columns is not None:  # named explicitly: say why it is not judged
                raise ConfigurationError(
                    f"The distribution monitor watches {column!r}, which has no numeric values."
                )
            continue
        past = [h.columns[column] for h in history if column in h.columns]
        means = [p.mean for p in past if p.mean is not None]
        result = partial(
            MonitorResult,
            monitor="distribution",
            column=column,
            severity=monitor.severity,
            observed=now.mean,
        )
        if not means:
            results.append(result(status="no history", detail="no earlier runs"))
            continue
        median = statistics.median(means)
        stds = [p.std for p in past if p.std is not None] + [now.std or 0.0]
        typical = statistics.median(stds)
        shift = abs(now.mean - median) / typical if typical > 0 else _unless_equal(now.mean, median)
        detail = (
            f"mean {now.mean:.4g} against a median of {median:.4g} over {len(means)} run(s): "
            f"{shift:.2f} standard deviations"
        )
        results.append(
            result(
                status="anomaly" if shift > monitor.max_shift else "ok",
                detail=detail,
                baseline=median,
            )
        )
    return results


def _freshness(
    monitor: FreshnessMonitor, current: DatasetMetrics, now: dt.datetime
) -> MonitorResult:
    result = partial(
        MonitorResult, monitor="freshness", column=monitor.column, severity=monitor.severity
    )
    if current.newest is None:
        return result(status="anomaly", detail=f"no timestamps in {monitor.column!r}")
    age = now - current.newest
    detail = f"newest row {_age(age)} old (limit {_age(monitor.max_age)})"
    return result(
        status="anomaly" if age > monitor.max_age else "ok",
        detail=detail,
        observed=age.total_seconds(),
        baseline=monitor.max_age.total_seconds(),
    )


def _columns(named: list[str] | None, current: DatasetMetrics, monitor: str) -> list[str]:
    if named is None:
        return list(current.columns)
    missing = [column for column in named if column not in current.columns]
    if missing:
        raise ConfigurationError(
            f"The {monitor} monitor watches column(s) {missing} that the data does not have "
            f"(columns: {', '.join(current.columns)}). Fix the monitor's 'columns'."
        )
    return named


def _robust_z(value: float, sample: Sequence[float], median: float) -> float:
    mad = statistics.median(abs(x - median) for x in sample)
    if mad == 0:
        return _unless_equal(value, median) * math.copysign(1, value - median)
    return _ROBUST * (value - median) / mad


def _unless_equal(value: float, median: float) -> float:
    return 0.0 if value == median else math.inf


def _age(delta: dt.timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"

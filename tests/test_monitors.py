"""Data-quality monitors over time: metrics per batch, a history on the Prefect server, the
monitors' verdicts, the anomaly event and the trend artifact. Real GX, a real Prefect server."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from flowkit_prefect.exceptions import ConfigurationError, DataAnomalyError, ValidationFailedError
from flowkit_prefect.validation import (
    DatasetMetrics,
    MonitorConfig,
    ValidationSuite,
    load_suite,
    measure,
    run_checkpoint,
    validate_dataframe,
)
from flowkit_prefect.validation.history import metrics_key, read_history, trend_key
from flowkit_prefect.validation.monitors import evaluate
from tests.helpers import wait_for_events

REPO = Path(__file__).resolve().parents[1]
SUITE = {
    "name": "batches",
    "expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}}],
}


def batch(rows: int, seed: int = 0, amount_mean: float = 50.0, null_share: float = 0.0):
    """``rows`` orders with ids, normally distributed amounts and a share of missing emails."""
    rng = np.random.default_rng(seed)
    email = [f"c{i}@example.com" for i in range(rows)]
    for i in range(int(rows * null_share)):
        email[i] = None
    now = dt.datetime.now(dt.UTC)
    return pd.DataFrame(
        {
            "id": range(rows),
            "amount": rng.normal(amount_mean, 10.0, rows),
            "email": email,
            "ordered_at": [(now - dt.timedelta(minutes=i)).isoformat() for i in range(rows)],
        }
    )


def _history(*sizes: int) -> list[DatasetMetrics]:
    """Metrics of past batches, newest first (as ``read_history`` returns them)."""
    return [measure(batch(size, seed=i)) for i, size in enumerate(sizes)]


# --- metrics and monitors, no server -------------------------------------------------------


def test_metrics_measure_a_batch_and_survive_the_history_format() -> None:
    data = batch(200, null_share=0.25)
    data.loc[3, "amount"] = np.nan
    metrics = measure(data, "ordered_at")
    assert metrics.rows == 200
    assert metrics.columns["email"].null_rate == 0.25
    assert metrics.columns["id"].distinct == 200 and metrics.columns["id"].max == 199
    assert metrics.columns["amount"].null_rate == 0.005
    assert metrics.columns["amount"].mean == pytest.approx(data["amount"].mean())
    assert metrics.columns["email"].mean is None  # not numeric
    assert metrics.newest is not None and metrics.newest.tzinfo is not None
    metrics.anomalies = ["volume", "null_rate(email)"]
    again = DatasetMetrics.from_rows(json.loads(json.dumps(metrics.to_rows())))
    assert again == metrics


def test_the_volume_monitor_flags_a_drop_after_one_run_and_judges_spread_after_three() -> None:
    config = MonitorConfig.parse({"volume": {}})
    assert config is not None
    (first,) = evaluate(config, measure(batch(200)), [])
    assert first.status == "no history" and not first.anomalous
    (drop,) = evaluate(config, measure(batch(40)), _history(200))
    assert drop.anomalous and drop.baseline == 200 and "-80%" in drop.detail
    (steady,) = evaluate(config, measure(batch(190)), _history(200))
    assert steady.status == "ok"
    (spike,) = evaluate(config, measure(batch(600)), _history(200, 210, 190, 205))
    assert spike.anomalous and "robust z" in spike.detail
    # noisy history: a 35% change within the usual swing is not an anomaly
    (noisy,) = evaluate(config, measure(batch(270)), _history(200, 300, 120, 260, 180))
    assert noisy.status == "ok", noisy.detail


def test_null_rate_distribution_and_freshness_monitors() -> None:
    config = MonitorConfig.parse(
        {
            "null_rate": {"columns": ["email"], "max_increase": 0.1, "severity": "warning"},
            "distribution": {"columns": ["amount"]},
            "freshness": {"column": "ordered_at", "max_age": "2h"},
        }
    )
    assert config is not None and config.timestamp_column == "ordered_at"
    past = [measure(batch(300, seed=i, null_share=0.02)) for i in range(4)]

    same = evaluate(config, measure(batch(300, seed=9, null_share=0.02), "ordered_at"), past)
    assert [r.status for r in same] == ["ok", "ok", "ok"], [r.detail for r in same]

    shifted = batch(300, seed=9, amount_mean=80.0, null_share=0.3)
    shifted["ordered_at"] = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)).isoformat()
    nulls, distribution, freshness = evaluate(config, measure(shifted, "ordered_at"), past)
    assert nulls.anomalous and nulls.severity == "warning" and nulls.label == "null_rate(email)"
    assert distribution.anomalous and "3.0" in distribution.detail  # (80 - 50) / 10
    assert freshness.anomalous and "5.0h old" in freshness.detail


@pytest.mark.parametrize(
    ("monitors", "message"),
    [
        ({"volumes": {}}, "volumes: Extra inputs"),
        ({"volume": {"min_change": -1}}, "volume.min_change"),
        ({"volume": {"severity": "fatal"}}, "volume.severity"),
        ({"freshness": {"column": "ts", "max_age": "soon"}}, "freshness.max_age"),
        ({"freshness": {"max_age": "1h"}}, "freshness.column"),
        ("volume", "monitors must be an object"),
    ],
)
def test_a_bad_monitor_configuration_says_what_to_fix(monitors: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        MonitorConfig.parse(monitors)


def test_monitors_naming_missing_columns_fail_before_judging() -> None:
    data = batch(10)
    with pytest.raises(ConfigurationError, match=r"watches column\(s\) \['nope'\]"):
        run_checkpoint(data, SUITE, monitors={"null_rate": {"columns": ["nope"]}}, publish=False)
    with pytest.raises(ConfigurationError, match="freshness monitor's column 'created'"):
        run_checkpoint(
            data,
            SUITE,
            monitors={"freshness": {"column": "created", "max_age": "1d"}},
            publish=False,
        )
    with pytest.raises(ConfigurationError, match="not timestamps"):
        run_checkpoint(
            data, SUITE, monitors={"freshness": {"column": "email", "max_age": "1d"}}, publish=False
        )


def test_the_suite_meta_and_the_block_configure_monitors() -> None:
    in_meta = {**SUITE, "meta": {"monitors": {"volume": {"min_change": 0.5}}}}
    assert load_suite(in_meta).meta["monitors"] == {"volume": {"min_change": 0.5}}
    block = ValidationSuite(suite=in_meta, monitors={"null_rate": {}})
    assert load_suite(block).meta["monitors"] == {"null_rate": {}}  # the block's win
    result = run_checkpoint(batch(20), block, publish=False)  # no history outside a run
    assert [m.label for m in result.monitors][:2] == ["null_rate(id)", "null_rate(amount)"]
    assert {m.status for m in result.monitors} == {"no history"}


# --- on a Prefect server ---------------------------------------------------------------------


def _artifact_rows(key: str) -> list[dict[str, Any]]:
    from prefect.artifacts import Artifact

    artifact = Artifact.get(key)
    assert artifact is not None, f"no artifact {key!r}"
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data  # type: ignore[return-value]


def test_a_planted_volume_drop_fails_the_run_with_an_anomaly_event_and_trend(
    harness: str,
) -> None:
    from prefect import flow

    name = f"orders-{uuid.uuid4().hex[:8]}"
    resource = f"flowkit.checkpoint.{name}"
    monitors = {
        "volume": {},
        "null_rate": {"columns": ["email"], "severity": "warning"},
    }

    @flow
    def pipeline(data: pd.DataFrame) -> int:
        return len(validate_dataframe(data, SUITE, name=name, monitors=monitors).valid)

    for seed, rows in enumerate((200, 210, 195)):
        assert pipeline(batch(rows, seed=seed)) == rows
    assert len(wait_for_events("flowkit.validation.passed", resource, count=3)) == 3
    history = read_history(name, 10)
    assert [h.rows for h in history] == [195, 210, 200]  # newest first, from the server

    with pytest.raises(DataAnomalyError, match=r"volume: 40 rows against a median of 200") as err:
        pipeline(batch(40, seed=7, null_share=0.5))
    assert isinstance(err.value, ValidationFailedError)
    assert [a.label for a in err.value.result.anomalies] == ["volume", "null_rate(email)"]

    (anomaly,) = wait_for_events("flowkit.validation.anomaly", resource)
    assert anomaly.payload == {
        "rows": 40,
        "anomalies": 2,
        "monitors": ["volume", "null_rate(email)"],
        "errors": 1,
    }
    assert any(r.get("prefect.resource.role") == "flow-run" for r in anomaly.related)
    assert wait_for_events("flowkit.validation.failed", resource)
    text = json.dumps(anomaly.payload) + json.dumps(dict(anomaly.resource))
    assert "example.com" not in text  # names and counts, never data values

    trend = _artifact_rows(trend_key(name))
    assert [row["rows"] for row in trend] == [200, 210, 195, 40]
    assert trend[-1]["anomaly"].startswith("ANOMALY volume: 40 rows")
    assert trend[-1]["null % email"] == 50.0 and not trend[0]["anomaly"]
    summary = _artifact_rows(metrics_key(name))
    assert {"metric": "rows", "column": "", "value": 40} in summary

    # The failed batch is in the history, marked; a normal batch passes again.
    assert read_history(name, 1)[0].anomalies == ["volume", "null_rate(email)"]
    assert pipeline(batch(205, seed=8)) == 205


def test_a_warning_monitor_reports_and_the_run_goes_on(harness: str) -> None:
    from prefect import flow

    name = f"warned-{uuid.uuid4().hex[:8]}"
    monitors = {"volume": {"severity": "warning"}}

    @flow
    def pipeline(data: pd.DataFrame) -> list[str]:
        result = validate_dataframe(data, SUITE, name=name, monitors=monitors)
        return [anomaly.label for anomaly in result.anomalies]

    assert pipeline(batch(100)) == []
    assert pipeline(batch(500)) == ["volume"]
    resource = f"flowkit.checkpoint.{name}"
    assert wait_for_events("flowkit.validation.anomaly", resource)[0].payload["errors"] == 0
    assert len(wait_for_events("flowkit.validation.passed", resource, count=2)) == 2
    assert not wait_for_events("flowkit.validation.failed", resource, timeout=1)


def test_the_history_is_shared_by_processes_not_kept_in_one(harness: str) -> None:
    """A checkpoint run in another Python process adds to the history this one reads."""
    from prefect import flow

    name = f"shared-{uuid.uuid4().hex[:8]}"
    script = textwrap.dedent(
        f"""
        import sys; sys.path.insert(0, {str(REPO)!r})
        from prefect import flow
        from flowkit_prefect.validation import validate_dataframe
        from tests.test_monitors import SUITE, batch

        @flow
        def other_worker():
            validate_dataframe(batch(300), SUITE, name={name!r}, monitors={{"volume": {{}}}})

        other_worker()
        """
    )
    env = {**os.environ, "PREFECT_API_URL": harness}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    @flow
    def this_worker() -> None:
        validate_dataframe(batch(60), SUITE, name=name, monitors={"volume": {}})

    with pytest.raises(DataAnomalyError, match="60 rows against a median of 300 over 1 run"):
        this_worker()


def test_every_checkpoint_in_a_run_keeps_history_for_monitors_added_later(harness: str) -> None:
    from prefect import flow

    name = f"later-{uuid.uuid4().hex[:8]}"

    @flow
    def pipeline(data: pd.DataFrame, monitors: dict | None = None) -> list[str]:
        result = validate_dataframe(data, SUITE, name=name, monitors=monitors)
        return [anomaly.label for anomaly in result.anomalies]

    assert pipeline(batch(300)) == []  # no monitors: measured and recorded, not judged
    assert [h.rows for h in read_history(name, 5)] == [300]
    with pytest.raises(DataAnomalyError, match="median of 300 over 1 run"):
        pipeline(batch(30), monitors={"volume": {}})

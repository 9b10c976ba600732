"""Benchmark the validation checkpoint against calling Great Expectations directly.

What: a seeded synthetic table (default 1,000,000 rows, ~1% bad rows, one defect each) is
validated against the same 5-expectation suite, in the same process, four ways per repeat:

* **gx-batch**: plain GX 1.x as documented: an ephemeral context, a pandas data source, a
  whole-dataframe batch definition, ``get_batch(...)`` then ``batch.validate(suite)``;
* **gx-vdef**: the same through ``ValidationDefinition.run`` (GX's production path);
* **gx-validator**: GX's v1 ``Validator``, the engine of both and the GX call the checkpoint
  makes: the strict baseline, the same GX work and nothing else;
* **checkpoint**: ``validate_dataframe(...)`` with policy "quarantine", called inside a Prefect
  flow against a temporary server (``prefect_test_harness``), or the server in
  ``PREFECT_API_URL`` when it is set. The timed span is the task call: the task run, suite
  checks, GX, the quarantine split, both artifacts and the event.

All GX sides use the checkpoint's result format (COMPLETE without the index query: the only
format that names failing rows) and context settings (in memory, no progress bars). The batch
path fetches the batch twice and so fingerprints (hashes) the whole frame twice; the
definition path serializes the COMPLETE result into its store. The checkpoint avoids both.

Why: the checkpoint's extra work over GX is the quarantine split and the report, so it should
stay close to GX: the target is checkpoint/GX time ≤ 1.2. The split on its own is timed too
(``split_rows`` on the same data and failures) and reported in rows per second.

Sides alternate the order on each repeat; each is reported by its fastest run, with the median
alongside. Exit status: 0 when every side found exactly the same bad rows (whether or not the
target is met: this is a measurement), 1 on an error or a mismatch.

Run from the repository root: ``.venv/bin/python benchmarks/bench_validation.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "ERROR")

import argparse
import gc
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import great_expectations as gx
import numpy as np
import pandas as pd
from _common import prefect_backend, report
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.validator.v1_validator import Validator

from flowkit_prefect.validation import CheckpointResult, load_suite, validate_dataframe
from flowkit_prefect.validation.engine import RESULT_FORMAT
from flowkit_prefect.validation.quarantine import split_rows

TARGET_RATIO = 1.2
STATUSES = ["placed", "paid", "shipped", "delivered", "returned"]
SUITE: dict[str, Any] = {
    "name": "bench-orders",
    "expectations": [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "order_id"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "quantity"}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "amount", "min_value": 0, "max_value": 10_000},
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "status", "value_set": STATUSES},
        },
        {
            "type": "expect_column_values_to_match_regex",
            "kwargs": {"column": "email", "regex": r"^[a-z0-9.]+@[a-z0-9.]+\.[a-z]+$"},
        },
    ],
}


def make_data(rows: int, bad_fraction: float, seed: int) -> tuple[pd.DataFrame, int]:
    """Orders with one defect in about ``bad_fraction`` of the rows; returns (data, bad rows)."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "order_id": np.arange(rows, dtype=np.int64),
            "amount": rng.uniform(1, 5_000, rows).round(2),
            "status": rng.choice(STATUSES, rows),
            "email": [f"user{i}@example.com" for i in range(rows)],
            "quantity": rng.integers(1, 20, rows).astype("float64"),
        }
    )
    bad = np.flatnonzero(rng.random(rows) < bad_fraction)
    defect = rng.integers(0, 4, bad.size)
    data.loc[bad[defect == 0], "quantity"] = np.nan
    data.loc[bad[defect == 1], "amount"] = -1.0
    data.loc[bad[defect == 2], "status"] = "lost"
    data.loc[bad[defect == 3], "email"] = "not-an-email"
    return data, int(bad.size)


@dataclass
class Run:
    seconds: float
    quarantined: int


@dataclass
class Side:
    name: str
    run: Callable[[], Run]
    results: list[Run] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(r.seconds for r in self.results)

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.results)


def _gx_context() -> Any:
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def run_gx(data: pd.DataFrame, path: str) -> tuple[Run, list[tuple[str, np.ndarray]]]:
    """Plain GX on the same data and suite (``path``: "batch", "definition" or "validator");
    also returns the failing row positions."""
    suite = load_suite(SUITE)  # same expectations; building it is not timed
    start = time.perf_counter()
    context = _gx_context()
    batch_definition = (
        context.data_sources.add_pandas("bench")
        .add_dataframe_asset("orders")
        .add_batch_definition_whole_dataframe("whole")
    )
    if path == "batch":
        batch = batch_definition.get_batch(batch_parameters={"dataframe": data})
        result = batch.validate(suite, result_format=RESULT_FORMAT)
    elif path == "definition":
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(
                name="orders", data=batch_definition, suite=context.suites.add(suite)
            )
        )
        result = definition.run(batch_parameters={"dataframe": data}, result_format=RESULT_FORMAT)
    else:
        validator = Validator(
            batch_definition=batch_definition,
            batch_parameters={"dataframe": data},
            result_format=RESULT_FORMAT,
        )
        result = validator.validate_expectation_suite(suite)
    seconds = time.perf_counter() - start
    failures = [
        (item.expectation_config.type, np.asarray(item.result["unexpected_index_list"]))
        for item in result.results
        if item.result.get("unexpected_index_list")
    ]
    bad = np.unique(np.concatenate([positions for _, positions in failures]))
    return Run(seconds, quarantined=int(bad.size)), failures


def run_checkpoint_in_flow(data: pd.DataFrame) -> Run:
    """``validate_dataframe`` inside a flow; the task call is timed.

    The flow takes no parameters: the frame is closed over, as a flow would read or receive it,
    rather than sent to the API as a flow-run parameter.
    """
    from prefect import flow

    @flow(name="bench-validation", persist_result=False)
    def bench_flow() -> tuple[float, CheckpointResult]:
        start = time.perf_counter()
        result = validate_dataframe(data, SUITE, name="bench-orders", policy="quarantine")
        return time.perf_counter() - start, result

    seconds, result = bench_flow()
    return Run(seconds, quarantined=len(result.quarantined))


def time_split(data: pd.DataFrame, failures: list[tuple[str, np.ndarray]], repeats: int) -> float:
    """Best time of ``split_rows`` on the data and GX's failing positions."""
    best = float("inf")
    for _ in range(max(repeats, 3)):
        start = time.perf_counter()
        split_rows(data, failures)
        best = min(best, time.perf_counter() - start)
    return best


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument("--bad-fraction", type=float, default=0.01, help="default 0.01")
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    data, bad = make_data(args.rows, args.bad_fraction, args.seed)
    print(
        f"Data: {len(data):,} rows x {len(data.columns)} columns, {bad:,} bad rows "
        f"({bad / len(data):.2%}), seed {args.seed}; built in {time.perf_counter() - start:.1f} s"
    )
    print(f"Suite: {len(SUITE['expectations'])} expectations; result format {RESULT_FORMAT}")
    load = os.getloadavg()[0]
    print(f"Repeats: {args.repeats}; load average {load:.2f} on {os.cpu_count()} CPUs")

    with prefect_backend() as api:
        print(f"Prefect API: {api}")
        warm, failures = run_gx(data, "batch")  # imports, first allocations: not timed
        run_gx(data, "definition")
        run_gx(data, "validator")
        run_checkpoint_in_flow(data)
        print(f"Warm-up done (gx {warm.seconds:.2f} s); timing...")
        baselines = [
            Side("gx-batch", lambda: run_gx(data, "batch")[0]),
            Side("gx-vdef", lambda: run_gx(data, "definition")[0]),
            Side("gx-validator", lambda: run_gx(data, "validator")[0]),
        ]
        checkpoint = Side("checkpoint", lambda: run_checkpoint_in_flow(data))
        sides = [*baselines, checkpoint]
        for repeat in range(args.repeats):
            order = sides if repeat % 2 == 0 else sides[::-1]
            for side in order:
                gc.collect()
                result = side.run()
                side.results.append(result)
                print(
                    f"  run {repeat + 1}/{args.repeats} {side.name:<12} {result.seconds:6.3f} s"
                    f"  quarantined={result.quarantined:,}"
                )

    split_seconds = time_split(data, failures, args.repeats)
    expected = baselines[0].results[0].quarantined
    got = {r.quarantined for side in sides for r in side.results}
    print()
    print(f"{'side':<14}{'best s':>9}{'median s':>10}{'rows/s':>14}")
    for side in sides:
        rate = args.rows / side.best
        print(f"{side.name:<14}{side.best:>9.3f}{side.median:>10.3f}{rate:>14,.0f}")
    print()
    for baseline in baselines:
        ratio = checkpoint.best / baseline.best
        print(
            f"checkpoint/{baseline.name:<13} {ratio:.3f}  (target <= {TARGET_RATIO}: "
            f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}; medians "
            f"{checkpoint.median / baseline.median:.3f}; "
            f"difference {checkpoint.best - baseline.best:+.3f} s)"
        )
    print(
        f"quarantine split: {split_seconds * 1000:.1f} ms for {args.rows:,} rows "
        f"({args.rows / split_seconds:,.0f} rows/s), {expected:,} rows quarantined"
    )
    if got != {expected}:
        print(f"ERROR: row counts differ across sides: {sorted(got)} (GX: {expected})")
        return 1
    for baseline in baselines:
        report(
            f"validation checkpoint / {baseline.name} time ({args.rows:,} rows)",
            checkpoint.best,
            baseline.best,
            target=f"<= {TARGET_RATIO}",
        )
    report(
        f"quarantine split: rows/s ({args.rows:,} rows)",
        args.rows / split_seconds,
        None,
        unit="rows/s",
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        sys.exit(1)

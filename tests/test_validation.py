"""Validation checkpoints: real Great Expectations, a real Prefect server, no mocks.

Bad input must fail with errors that say what to fix and leave nothing half-written; good input
must be split into valid and quarantined rows without losing or duplicating one.
"""

from __future__ import annotations

import json
import pickle
import re
import uuid
from pathlib import Path
from typing import Any

import great_expectations as gx
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from flowkit_prefect.exceptions import ConfigurationError, FlowkitError
from flowkit_prefect.validation import (
    FAILED_COLUMN,
    CheckpointResult,
    DataReadError,
    ExpectationRunError,
    SchemaDriftError,
    SuiteError,
    ValidationFailedError,
    ValidationSuite,
    load_suite,
    read_dataset,
    run_checkpoint,
    validate_dataframe,
    validate_file,
)
from flowkit_prefect.validation.quarantine import split_rows
from tests.helpers import wait_for_events

NOT_NULL_ID = "expect_column_values_to_not_be_null(id)"
AMOUNT_RANGE = "expect_column_values_to_be_between(amount)"
STATUS_SET = "expect_column_values_to_be_in_set(status)"


def orders_suite(**extra: Any) -> dict[str, Any]:
    """id not null and amount in [0, 100] are errors; status in set is a warning."""
    expectations = [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "amount", "min_value": 0, "max_value": 100},
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "status", "value_set": ["paid", "shipped"]},
            "meta": {"severity": "warning"},
        },
        *extra.get("more", []),
    ]
    return {"name": "orders", "expectations": expectations}


@pytest.fixture
def orders() -> pd.DataFrame:
    """Six orders under a non-default index: 'b' has no id and a negative amount, 'd' an
    amount of 500, 'e' an unknown status (a warning only)."""
    return pd.DataFrame(
        {
            "id": [1.0, np.nan, 3.0, 4.0, 5.0, 6.0],
            "amount": [10.0, -5.0, 30.0, 500.0, 50.0, 60.0],
            "status": ["paid", "paid", "shipped", "paid", "lost", "shipped"],
        },
        index=pd.Index(["a", "b", "c", "d", "e", "f"], name="order"),
    )


def check(data: pd.DataFrame, suite: Any = None, **options: Any) -> CheckpointResult:
    """The checkpoint without artifacts or events (no server needed)."""
    return run_checkpoint(data, suite or orders_suite(), publish=False, **options)


def assert_nothing_lost(data: pd.DataFrame, result: CheckpointResult) -> None:
    assert len(result.valid) + len(result.quarantined) == len(data) == result.input_rows
    assert not set(result.valid.index) & set(result.quarantined.index)
    restored = pd.concat([result.valid, result.quarantined.drop(columns=FAILED_COLUMN)])
    pd.testing.assert_frame_equal(restored.loc[data.index], data)


# --------------------------------------------------------------------------- policies


def test_quarantine_splits_rows_with_their_reasons(orders: pd.DataFrame) -> None:
    before = orders.copy(deep=True)
    result = check(orders, name="orders", policy="quarantine")

    assert not result.success and (result.errors, result.warnings) == (2, 1)
    assert list(result.valid.index) == ["a", "c", "e", "f"]  # 'e' only broke a warning
    assert result.quarantined[FAILED_COLUMN].to_dict() == {
        "b": f"{NOT_NULL_ID}; {AMOUNT_RANGE}",
        "d": AMOUNT_RANGE,
    }
    assert result.valid.index.name == "order"
    assert list(result.quarantined.columns) == [*orders.columns, FAILED_COLUMN]
    assert_nothing_lost(orders, result)
    pd.testing.assert_frame_equal(orders, before)  # the caller's frame is untouched

    rows = {row.expectation: row for row in result.expectations}
    assert list(rows) == [NOT_NULL_ID, AMOUNT_RANGE, STATUS_SET]  # suite order
    amount = rows[AMOUNT_RANGE]
    assert (amount.severity, amount.success, amount.unexpected_count) == ("error", False, 2)
    assert amount.column == "amount" and sorted(amount.observed_value) == [-5.0, 500.0]
    assert rows[STATUS_SET].severity == "warning" and rows[STATUS_SET].observed_value == ["lost"]
    json.dumps([row.model_dump() for row in result.expectations])  # JSON-safe


def test_quarantine_with_duplicate_and_integer_index_labels() -> None:
    data = pd.DataFrame(
        {"id": [1, 2, None, 4], "amount": [1.0, 200.0, 3.0, 4.0]}, index=[7, 7, 3, 1]
    )
    suite = {"name": "s", "expectations": orders_suite()["expectations"][:2]}
    result = check(data, suite)
    assert list(result.valid.index) == [7, 1]
    assert list(result.quarantined.index) == [7, 3]
    assert list(result.quarantined["amount"]) == [200.0, 3.0]
    assert len(result.valid) + len(result.quarantined) == 4


def test_table_level_error_stops_a_quarantine_checkpoint(orders: pd.DataFrame) -> None:
    rows_check = {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 100}}
    with pytest.raises(ValidationFailedError) as caught:
        check(orders, orders_suite(more=[rows_check]), name="orders", policy="quarantine")
    message = str(caught.value)
    assert "expect_table_row_count_to_be_between" in message and "table-level" in message
    assert "observed 6" in message
    assert_nothing_lost(orders, caught.value.result)  # the report still carries the split


def test_fail_policy_raises_with_what_failed(orders: pd.DataFrame) -> None:
    with pytest.raises(ValidationFailedError) as caught:
        check(orders, name="orders", policy="fail")
    message = str(caught.value)
    assert f"{AMOUNT_RANGE} [error]: 2 unexpected (33.33%)" in message
    assert NOT_NULL_ID in message and STATUS_SET not in message  # warnings never fail
    assert "validation-orders" in message  # where the report is
    result = caught.value.result
    assert not result.success and result.errors == 2
    assert sorted(result.quarantined.index) == ["b", "d"]
    assert pickle.loads(pickle.dumps(caught.value)).result.errors == 2


def test_warnings_never_fail_and_fail_policy_passes_clean_data(orders: pd.DataFrame) -> None:
    clean = orders.loc[["a", "c", "e", "f"]]  # 'e' still breaks the warning
    result = check(clean, policy="fail")
    assert result.success and (result.errors, result.warnings) == (0, 1)
    assert len(result.valid) == 4 and result.quarantined.empty


def test_warn_policy_keeps_every_row(orders: pd.DataFrame) -> None:
    result = check(orders, policy="warn")
    assert not result.success and (result.errors, result.warnings) == (2, 1)
    pd.testing.assert_frame_equal(result.valid, orders)
    assert result.quarantined.empty and FAILED_COLUMN in result.quarantined.columns


def test_native_gx_severity_and_mostly(orders: pd.DataFrame) -> None:
    suite = gx.ExpectationSuite(
        name="native",
        expectations=[
            gx.expectations.ExpectColumnValuesToNotBeNull(column="id", mostly=0.8),
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="amount", min_value=0, max_value=100, severity="warning"
            ),
        ],
    )
    result = check(orders, suite)
    # `mostly` lets the expectation pass, but the row that broke it is still held back
    assert result.success and result.warnings == 1
    assert result.quarantined[FAILED_COLUMN].to_dict() == {"b": NOT_NULL_ID}
    assert suite.expectations[0].id is None  # the caller's suite is not modified


def test_public_gx_path_gives_the_same_split(
    orders: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without GX's internal v1 Validator the checkpoint uses ValidationDefinition.run."""
    from flowkit_prefect.validation import engine

    fast = check(orders)
    monkeypatch.setattr(engine, "Validator", None)
    public = check(orders)
    pd.testing.assert_frame_equal(public.quarantined, fast.quarantined)
    assert public.expectations == fast.expectations


def test_empty_frame_passes(orders: pd.DataFrame) -> None:
    result = check(orders.iloc[:0])
    assert result.success and result.input_rows == 0 and result.valid.empty


def test_split_handles_many_expectations() -> None:
    data = pd.DataFrame({"x": range(10)})
    failures = [(f"check-{n}", np.array([n % 10, 9])) for n in range(70)]  # > 64 bits
    valid, quarantined = split_rows(data, failures)
    assert valid.empty and len(quarantined) == 10
    assert quarantined[FAILED_COLUMN].loc[9].count(";") == 69
    assert quarantined[FAILED_COLUMN].loc[3] == "check-3; check-13; check-23; check-33; " + (
        "check-43; check-53; check-63"
    )


# --------------------------------------------------------------------------- schema drift


def test_schema_drift_snapshot_added_removed_changed(orders: pd.DataFrame, tmp_path: Path) -> None:
    snapshot = tmp_path / "schemas" / "orders.json"
    first = check(orders, schema_snapshot=snapshot)
    assert first.drift is not None and not first.drift.drifted
    assert json.loads(snapshot.read_text()) == {
        "id": "float64",
        "amount": "float64",
        "status": "str",
    }

    drifted = orders.drop(columns="status").assign(
        id=orders["id"].fillna(0).astype("int64"), channel="web"
    )
    suite = {"name": "s", "expectations": orders_suite()["expectations"][:2]}
    result = check(drifted, suite, schema_snapshot=snapshot)
    assert result.drift is not None and result.drift.drifted
    assert result.drift.added == ["channel"] and result.drift.removed == ["status"]
    assert result.drift.changed == {"id": ("float64", "int64")}

    with pytest.raises(SchemaDriftError) as caught:
        check(drifted, suite, schema_snapshot=snapshot, drift_policy="fail")
    assert "added: channel" in str(caught.value) and "delete the snapshot" in str(caught.value)
    assert caught.value.drift.removed == ["status"] and caught.value.result.input_rows == 6
    # the snapshot keeps the first schema, written atomically (no temporary files left)
    assert json.loads(snapshot.read_text())["status"] == "str"
    assert [p.name for p in snapshot.parent.iterdir()] == ["orders.json"]


def test_snapshot_is_not_written_when_the_checkpoint_fails(
    orders: pd.DataFrame, tmp_path: Path
) -> None:
    snapshot = tmp_path / "orders.json"
    with pytest.raises(ValidationFailedError):
        check(orders, policy="fail", schema_snapshot=snapshot)
    with pytest.raises(SuiteError):
        check(orders.drop(columns="amount"), schema_snapshot=snapshot)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_snapshot_says_to_delete_it(orders: pd.DataFrame, tmp_path: Path) -> None:
    snapshot = tmp_path / "orders.json"
    snapshot.write_text("{not json")
    with pytest.raises(ConfigurationError, match="Delete it"):
        check(orders, schema_snapshot=snapshot)


# --------------------------------------------------------------------------- bad input


def test_suite_naming_a_missing_column(orders: pd.DataFrame, tmp_path: Path) -> None:
    snapshot = tmp_path / "orders.json"
    check(orders, policy="warn", schema_snapshot=snapshot)
    renamed = orders.rename(columns={"amount": "Amount"})
    with pytest.raises(SuiteError) as caught:
        check(renamed, schema_snapshot=snapshot)
    message = str(caught.value)
    assert "column 'amount' (did you mean 'Amount'?)" in message
    assert f"used by {AMOUNT_RANGE}" in message
    assert "Available columns: id, Amount, status" in message
    assert "It is in the schema snapshot, so it was removed" in message


def test_wrong_column_type_is_explained(orders: pd.DataFrame) -> None:
    as_text = orders.assign(amount=orders["amount"].astype(str))
    with pytest.raises(ExpectationRunError) as caught:
        check(as_text)
    message = str(caught.value)
    assert AMOUNT_RANGE in message and "'amount' is str" in message
    assert "pd.to_numeric" in message


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"type": "expect_column_values_to_not_be_nul", "kwargs": {"column": "id"}},
            "unknown expectation 'expect_column_values_to_not_be_nul'; did you mean "
            "'expect_column_values_to_not_be_null'",
        ),
        (
            {"type": "expect_column_values_to_be_between", "kwargs": {"colum": "id"}},
            "missing required kwarg 'column'; unknown kwarg 'colum'",
        ),
        (
            {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "id"}},
            "missing required kwarg 'value_set'",
        ),
        (
            {"type": "expect_column_values_to_not_be_null", "column": "id"},
            "unknown key(s) ['column']. Put an expectation's arguments under 'kwargs'",
        ),
        (
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "id"},
                "meta": {"severity": "fatal"},
            },
            "meta severity 'fatal' is not one of 'error', 'warning'",
        ),
    ],
)
def test_bad_suites_say_what_to_fix(entry: dict[str, Any], expected: str) -> None:
    with pytest.raises(SuiteError) as caught:
        load_suite({"name": "bad", "expectations": [entry]})
    assert expected in str(caught.value)
    assert "Expectation #1" in str(caught.value)


def test_suite_sources(tmp_path: Path) -> None:
    data = orders_suite()
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(data))
    suites = [
        load_suite(data),
        load_suite(path),
        load_suite(str(path)),
        load_suite(load_suite(data)),
        load_suite(ValidationSuite(suite=data)),
    ]
    for suite in suites:
        assert [e.expectation_type for e in suite.expectations] == [
            e["type"] for e in data["expectations"]
        ]
        assert suite.expectations[2].meta == {"severity": "warning"}
    (tmp_path / "broken.json").write_text('{"name": "x", "expectations": [')
    with pytest.raises(SuiteError, match="not valid JSON"):
        load_suite(tmp_path / "broken.json")
    with pytest.raises(SuiteError, match="No suite file"):
        load_suite(tmp_path / "missing.json")
    with pytest.raises(SuiteError, match='needs an "expectations" list'):
        load_suite({"name": "x"})


def test_the_block_checks_structure_and_gx_checks_expectations_on_use(
    orders: pd.DataFrame,
) -> None:
    with pytest.raises(ValidationError, match=r"unknown expectation 'not_null'.*'expect_'"):
        ValidationSuite(suite={"expectations": [{"type": "not_null", "kwargs": {}}]})
    with pytest.raises(ValidationError, match="meta severity 'fatal' is not one of"):
        ValidationSuite(
            suite={"expectations": [{"type": "expect_x", "meta": {"severity": "fatal"}}]}
        )
    with pytest.raises(ValidationError, match='needs an "expectations" list'):
        ValidationSuite(suite={"name": "x"})
    with pytest.raises(ValidationError, match=r"unknown key\(s\) \['column'\]"):
        ValidationSuite(suite={"expectations": [{"type": "expect_x", "column": "id"}]})
    # a well-formed name GX does not know: saved, and refused when a checkpoint uses it
    unknown = ValidationSuite(suite={"expectations": [{"type": "expect_nothing", "kwargs": {}}]})
    with pytest.raises(
        SuiteError, match="Expectation #1 \\(expect_nothing\\): unknown expectation"
    ):
        load_suite(unknown)
    with pytest.raises(SuiteError, match="unknown expectation 'expect_nothing'"):
        check(orders, unknown)


def test_bad_arguments_and_frames(orders: pd.DataFrame) -> None:
    with pytest.raises(ConfigurationError, match="policy 'drop' is not one of"):
        check(orders, policy="drop")
    with pytest.raises(DataReadError, match="duplicate column names"):
        check(pd.concat([orders, orders["id"]], axis=1))
    with pytest.raises(DataReadError, match="already has a '_flowkit_failed' column"):
        check(orders.assign(**{FAILED_COLUMN: "x"}))


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.csv", None, "No dataset at"),
        ("empty.csv", "", "is empty (0 bytes)"),
        ("blank.csv", "\n\n", "has no CSV header or rows"),
        ("bad.csv", "a,b\n1,2\n3,4,5,6\n", "Expected 2 fields in line 3, saw 4"),
        ("data.xlsx", "x", "Unsupported file type '.xlsx'"),
        ("bad.jsonl", '{"a": 1}\n{"a": 2,\n', "line 2"),
        ("list.jsonl", '{"a": 1}\n[1, 2]\n', "line 2: a JSON list, not an object"),
        ("bad.parquet", "not parquet", "is not a readable Parquet file"),
    ],
)
def test_read_dataset_errors(tmp_path: Path, name: str, content: str | None, expected: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataReadError) as caught:
        read_dataset(path)
    assert expected in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ([name] if content is not None else [])


def test_read_dataset_formats(orders: pd.DataFrame, tmp_path: Path) -> None:
    frame = orders.reset_index(drop=True)
    frame.to_csv(tmp_path / "o.csv", index=False)
    frame.to_csv(tmp_path / "o.csv.gz", index=False)
    frame.to_parquet(tmp_path / "o.parquet")
    frame.to_json(tmp_path / "o.jsonl", orient="records", lines=True)
    frame.to_json(tmp_path / "lines.json", orient="records", lines=True)
    frame.to_json(tmp_path / "array.json", orient="records")
    for name in ("o.csv", "o.csv.gz", "o.parquet", "o.jsonl", "lines.json", "array.json"):
        read = read_dataset(tmp_path / name)
        assert list(read.columns) == ["id", "amount", "status"], name
        assert read["amount"].tolist() == frame["amount"].tolist(), name


def test_data_docs(orders: pd.DataFrame, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    result = check(orders, data_docs_dir=docs)
    assert result.data_docs == str(docs / "index.html")
    pages = list((docs / "validations").rglob("*.html"))
    assert len(pages) == 1
    page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", pages[0].read_text()))
    assert "values must be greater than or equal to 0.0 and less than or equal to 100.0" in page
    assert "2 unexpected values found" in page
    check(orders, data_docs_dir=docs)  # replaced, not accumulated
    assert len(list((docs / "validations").rglob("*.html"))) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert check(orders, data_docs_dir=foreign).data_docs is None  # logged, not fatal
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


# --------------------------------------------------------------------------- on a Prefect server


def test_checkpoint_in_a_flow_publishes_artifacts_and_an_event(
    harness: str, orders: pd.DataFrame
) -> None:
    from prefect import flow
    from prefect.artifacts import Artifact

    name = f"Orders {uuid.uuid4().hex[:8]}"
    slug = name.lower().replace(" ", "-")

    @flow
    def pipeline() -> CheckpointResult:
        return validate_dataframe(orders, orders_suite(), name=name)

    result = pipeline()
    assert len(result.quarantined) == 2

    table = Artifact.get(f"validation-{slug}")
    assert table is not None and table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [row["expectation"] for row in rows] == [NOT_NULL_ID, AMOUNT_RANGE, STATUS_SET]
    assert set(rows[0]) == {
        "expectation",
        "severity",
        "success",
        "observed value",
        "unexpected count",
        "unexpected percent",
    }
    summary = Artifact.get(f"validation-{slug}-summary")
    assert summary is not None and summary.type == "markdown"
    assert "QUARANTINED 2 rows" in summary.data and "| 6 | 4 | 2 |" in summary.data

    events = wait_for_events("flowkit.validation.quarantined", f"flowkit.checkpoint.{slug}")
    assert len(events) == 1
    assert events[0].payload == {
        "rows": 6,
        "valid": 4,
        "quarantined": 2,
        "errors": 2,
        "warnings": 1,
    }
    assert any(r.get("prefect.resource.role") == "flow-run" for r in events[0].related)


def test_failing_file_checkpoint_fails_the_flow_after_reporting(
    harness: str, orders: pd.DataFrame, tmp_path: Path
) -> None:
    from prefect import flow
    from prefect.artifacts import Artifact

    path = tmp_path / "orders.csv"
    orders.to_csv(path)
    name = f"file-{uuid.uuid4().hex[:8]}"

    @flow
    def pipeline() -> CheckpointResult:
        return validate_file(path, orders_suite(), name=name, policy="fail")

    with pytest.raises(ValidationFailedError, match=re.escape(AMOUNT_RANGE)):
        pipeline()
    assert Artifact.get(f"validation-{name}") is not None

    clean = tmp_path / "clean.csv"
    orders.loc[["a", "c", "f"]].to_csv(clean)

    @flow
    def clean_pipeline() -> CheckpointResult:
        return validate_file(clean, orders_suite(), name=name, policy="fail")

    result = clean_pipeline()
    assert result.success and list(result.valid["order"]) == ["a", "c", "f"]
    assert wait_for_events("flowkit.validation.failed", f"flowkit.checkpoint.{name}")
    assert wait_for_events("flowkit.validation.passed", f"flowkit.checkpoint.{name}")


def test_validation_suite_block_round_trip(harness: str, orders: pd.DataFrame) -> None:
    name = f"orders-{uuid.uuid4().hex[:8]}"
    ValidationSuite(suite=orders_suite()).save(name, overwrite=True)
    suite = load_suite(f"flowkit-validation-suite/{name}")
    assert suite.name == "orders" and len(suite.expectations) == 3
    assert check(orders, f"flowkit-validation-suite/{name}").errors == 2
    with pytest.raises(SuiteError, match="flowkit-validation-suite/nope"):
        load_suite("flowkit-validation-suite/nope")
    unknown = {"name": "u", "expectations": [{"type": "expect_nothing", "kwargs": {}}]}
    ValidationSuite(suite=unknown).save(f"{name}-unknown", overwrite=True)
    with pytest.raises(
        SuiteError,
        match=f"block 'flowkit-validation-suite/{name}-unknown'.*"
        "unknown expectation 'expect_nothing'",
    ):
        check(orders, f"flowkit-validation-suite/{name}-unknown")
    with pytest.raises(SuiteError, match=f"block 'flowkit-validation-suite/{name}-unknown'"):
        load_suite(ValidationSuite.load(f"{name}-unknown"))


def test_errors_are_flowkit_errors() -> None:
    for error in (SuiteError, DataReadError, ExpectationRunError, SchemaDriftError):
        assert issubclass(error, FlowkitError)
    assert issubclass(SuiteError, ConfigurationError)

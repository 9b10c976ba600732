"""Profile a data sample for the suite drafter: dtypes, nulls, ranges, a few values and rows.

Kept cheap and bounded, so the prompt stays small whatever the sample's size.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from flowkit_prefect.exceptions import ConfigurationError

EXAMPLE_ROWS = 20
"""Example rows sent to the model."""
MAX_DISTINCT_VALUES = 10
"""A text column with at most this many distinct values has them listed."""
MAX_CELL_CHARS = 80
"""Longer cell values are cut in the prompt."""
# Rows' worth of values per column in the prompt: examples + distinct values + min/max <= 50.
assert EXAMPLE_ROWS + MAX_DISTINCT_VALUES + 2 <= 50


def cell(value: Any) -> Any:
    """A JSON-ready, length-capped value for the prompt."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, bool | int | float):
        return value
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def column_profile(name: str, column: pd.Series) -> dict[str, Any]:
    """dtype, nulls and distinct count of a column; min/max, lengths or values by its kind."""
    values = column.dropna()
    profile: dict[str, Any] = {"name": name, "dtype": str(column.dtype)}
    profile["nulls"] = int(column.isna().sum())
    try:
        distinct = int(values.nunique())
    except TypeError:  # unhashable cells (lists, dicts)
        return profile
    profile["distinct"] = distinct
    if values.empty:
        return profile
    if pd.api.types.is_bool_dtype(column):
        profile["values"] = sorted(bool(v) for v in values.unique())
    elif pd.api.types.is_numeric_dtype(column) or pd.api.types.is_datetime64_any_dtype(column):
        profile["min"], profile["max"] = cell(values.min()), cell(values.max())
    else:
        if distinct <= MAX_DISTINCT_VALUES:
            profile["values"] = sorted((cell(v) for v in values.unique()), key=str)
        lengths = values.astype(str).str.len()
        profile["min_length"], profile["max_length"] = int(lengths.min()), int(lengths.max())
    return profile


def profile_sample(sample: pd.DataFrame) -> dict[str, Any]:
    """A cheap profile of the sample: row count, per-column stats, a few example rows.

    At most ``EXAMPLE_ROWS`` rows of values (spread over the sample), ``MAX_DISTINCT_VALUES``
    distinct values per column and min/max are included, whatever the sample's size.
    """
    check_sample(sample)
    frame = sample.rename(columns=str)
    picked = frame if len(frame) <= EXAMPLE_ROWS else frame.sample(EXAMPLE_ROWS, random_state=0)
    return {
        "rows": len(frame),
        "columns": [column_profile(str(name), column) for name, column in frame.items()],
        "example_rows": [[cell(v) for v in row] for row in picked.sort_index().itertuples(False)],
    }


def check_sample(sample: Any) -> None:
    """``ConfigurationError`` unless ``sample`` is a non-empty DataFrame."""
    if not isinstance(sample, pd.DataFrame):
        raise ConfigurationError(
            f"draft_suite needs a pandas DataFrame sample, got {type(sample).__name__}."
        )
    if sample.empty:
        raise ConfigurationError(
            "The sample is empty: pass a pandas DataFrame with at least one row and one column "
            "of the data the suite is for, e.g. df.head(1000) or df.sample(1000)."
        )
    names = [str(column) for column in sample.columns]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigurationError(
            f"The sample has duplicate column names {duplicates}; an expectation names one "
            "column, so rename them first, e.g. sample.set_axis([...], axis=1)."
        )

"""Schema drift: compare the data's columns and dtypes with a JSON snapshot ``{column: dtype}``.

The snapshot is written once, from the first data that passes a checkpoint; later runs compare
against it. Delete the file to accept a new schema. Writes are atomic (temporary file +
``os.replace``), so an interrupted run never leaves a half-written snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from flowkit_prefect._atomic import write_json_atomically
from flowkit_prefect.exceptions import ConfigurationError
from flowkit_prefect.validation.results import SchemaDrift


def schema_of(data: pd.DataFrame) -> dict[str, str]:
    """``{column: dtype}`` as strings, e.g. ``{"id": "int64", "name": "str"}``."""
    return {str(column): str(dtype) for column, dtype in data.dtypes.items()}


def read_snapshot(path: str | Path) -> dict[str, str] | None:
    """The stored schema, or ``None`` when there is no snapshot yet."""
    file = Path(path)
    if not file.exists():
        return None
    try:
        schema = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"The schema snapshot {file} cannot be read ({exc}). Delete it to record a new one "
            "from the next run's data."
        ) from exc
    if not isinstance(schema, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in schema.items()
    ):
        raise ConfigurationError(
            f"The schema snapshot {file} must be a JSON object {{column: dtype string}}. Fix it, "
            "or delete it to record a new one from the next run's data."
        )
    return schema


def compare(snapshot: Mapping[str, str], current: Mapping[str, str]) -> SchemaDrift:
    """Columns added, removed, and changed (old dtype, new dtype), in column order."""
    return SchemaDrift(
        added=[column for column in current if column not in snapshot],
        removed=[column for column in snapshot if column not in current],
        changed={
            column: (snapshot[column], dtype)
            for column, dtype in current.items()
            if column in snapshot and snapshot[column] != dtype
        },
    )


def write_snapshot(path: str | Path, schema: Mapping[str, str]) -> None:
    """Write the snapshot atomically: readers see the old file or the new one, never a part."""
    write_json_atomically(path, dict(schema))

"""The validation suite block: Great Expectations suite JSON stored in Prefect, as configuration.

The block checks only the suite's structure, without Great Expectations (it takes seconds to
import), so registering, saving and listing blocks stays fast; ``flowkit_prefect.validation``
checks each expectation with GX (known type, valid kwargs) when the suite is used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, field_validator

from flowkit_prefect.exceptions import SuiteError

__all__ = [
    "SuiteEntry",
    "ValidationSuite",
    "check_entry",
    "check_suite",
    "columns_of",
    "expectation_label",
]

ENTRY_KEYS = frozenset(
    {
        "type",
        "expectation_type",  # the GX 0.x spelling
        "kwargs",
        "meta",
        "id",
        "notes",
        "description",
        "severity",
        "rendered_content",
    }
)
COLUMN_KEYS = ("column", "column_A", "column_B", "column_list")
EXPECTATIONS_URL = "https://greatexpectations.io/expectations"
# What a GX expectation name looks like: expect_..., or GX's unexpected_rows_expectation.
_TYPE_NAME = re.compile(r"expect_[a-z0-9_]+|[a-z][a-z0-9_]*_expectation")


class SuiteEntry(NamedTuple):
    """One structurally valid expectation of suite JSON."""

    type: str
    kwargs: Mapping[str, Any]
    meta: Mapping[str, Any]
    where: str
    """``Expectation #<n> (<type>(<columns>))``, the prefix of every message about it."""


def check_suite(data: Any) -> list[Mapping[str, Any]]:
    """The expectation entries of suite JSON; ``SuiteError`` when it is not an object with an
    ``"expectations"`` list."""
    if not isinstance(data, Mapping):
        raise SuiteError(
            f"An expectation suite must be a JSON object, not a {type(data).__name__}: "
            '{"name": ..., "expectations": [...]}.'
        )
    entries = data.get("expectations")
    if not isinstance(entries, list):
        raise SuiteError(
            'An expectation suite needs an "expectations" list: {"name": ..., "expectations": '
            '[{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}}]}.'
        )
    return entries


def check_entry(entry: Any, number: int) -> SuiteEntry:
    """Check one expectation entry's structure (keys, type name, kwargs, meta severity).

    Whether GX knows the type and accepts the kwargs is checked where the suite is used.
    """
    where = f"Expectation #{number}"
    if not isinstance(entry, Mapping):
        raise SuiteError(f"{where} must be an object with 'type' and 'kwargs', not {entry!r}.")
    unknown = sorted(set(entry) - ENTRY_KEYS)
    if unknown:
        raise SuiteError(
            f"{where} has unknown key(s) {unknown}. Put an expectation's arguments under "
            "'kwargs', and its severity under 'meta': "
            '{"type": ..., "kwargs": {"column": ...}, "meta": {"severity": "warning"}}.'
        )
    type_ = entry.get("type") or entry.get("expectation_type")
    if not isinstance(type_, str) or not type_:
        raise SuiteError(f"{where} has no 'type', e.g. \"expect_column_values_to_not_be_null\".")
    kwargs = entry.get("kwargs") or {}
    meta = entry.get("meta") or {}
    if not isinstance(kwargs, Mapping) or not isinstance(meta, Mapping):
        raise SuiteError(f"{where} ({type_}): 'kwargs' and 'meta' must be objects.")
    where = f"{where} ({expectation_label(type_, kwargs)})"
    if "severity" in meta and meta["severity"] not in ("error", "warning"):
        raise SuiteError(
            f"{where}: meta severity {meta['severity']!r} is not one of 'error', 'warning'."
        )
    if not _TYPE_NAME.fullmatch(type_):
        raise SuiteError(
            f"{where}: unknown expectation {type_!r}; GX expectation names are snake_case and "
            f"start with 'expect_'. See {EXPECTATIONS_URL} for the list."
        )
    return SuiteEntry(type_, kwargs, meta, where)


def expectation_label(type_: str, kwargs: Mapping[str, Any]) -> str:
    """``type(columns)``, e.g. ``expect_column_values_to_be_between(amount)``."""
    columns = columns_of(kwargs)
    return f"{type_}({', '.join(columns)})" if columns else type_


def columns_of(kwargs: Mapping[str, Any]) -> list[str]:
    """The columns an expectation's domain names (``column``, ``column_A/B``, ``column_list``)."""
    columns: list[str] = []
    for key in COLUMN_KEYS:
        value = kwargs.get(key)
        if isinstance(value, str):
            columns.append(value)
        elif isinstance(value, list | tuple):
            columns.extend(str(item) for item in value)
    return columns


class ValidationSuite(Block):
    """A Great Expectations suite stored as a Prefect block, so flows load it by name.

    ``suite`` is GX's suite JSON. Mark an expectation as a warning (reported, never failing the
    run) with ``"meta": {"severity": "warning"}``; every other expectation is an error. Saving
    checks the suite's structure; GX checks each expectation when a checkpoint loads the suite.

    Example:
        ```python
        from flowkit_prefect.validation import ValidationSuite, load_suite

        suite_block = ValidationSuite.load("BLOCK_NAME")
        suite = load_suite(suite_block)  # a gx.ExpectationSuite
        ```
    """

    _block_type_name = "Flowkit Validation Suite"
    _block_type_slug = "flowkit-validation-suite"
    _description = "A Great Expectations expectation suite used by flowkit validation checkpoints."
    _documentation_url = HttpUrl(
        "https://github.com/flowkit-prefect/flowkit-prefect#data-validation"
    )

    suite: dict[str, Any] = Field(
        description=(
            'GX expectation suite JSON: {"name": ..., "expectations": [{"type": ..., "kwargs": '
            '{...}, "meta": {"severity": "warning"}}]}.'
        ),
    )

    monitors: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Data-quality monitors over the dataset's recent runs, e.g. "
            '{"volume": {"min_change": 0.3}, "null_rate": {"max_increase": 0.1, "severity": '
            '"warning"}, "freshness": {"column": "created_at", "max_age": "24h"}}. Overrides the '
            "suite's meta.monitors."
        ),
    )

    @field_validator("suite")
    @classmethod
    def _suite_is_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            for number, entry in enumerate(check_suite(value), 1):
                check_entry(entry, number)
        except SuiteError as exc:
            raise ValueError(str(exc)) from exc
        return value

"""Expectation suites: the ``ValidationSuite`` block, ``load_suite`` and the checks GX skips.

GX drops an invalid expectation from a suite with a log line and reports a missing column as a
failed expectation; here both are ``SuiteError``s that say what to change.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

import great_expectations as gx
from great_expectations.expectations.expectation import Expectation
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
from great_expectations.expectations.registry import (
    get_expectation_impl,
    list_registered_expectation_implementations,
)

from flowkit_prefect.blocks.validation_suite import ValidationSuite
from flowkit_prefect.exceptions import ConfigurationError, SuiteError
from flowkit_prefect.validation.results import Severity

_ENTRY_KEYS = {
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
_COLUMN_KEYS = ("column", "column_A", "column_B", "column_list")
# Pydantic fields of every expectation that are not arguments a suite author sets in kwargs.
_NOT_KWARGS = {
    "id",
    "meta",
    "notes",
    "result_format",
    "description",
    "catch_exceptions",
    "rendered_content",
    "severity",
    "windows",
    "batch_id",
}
_GX_SEVERITY = {"critical": "error", "warning": "warning", "info": "warning"}


SuiteSource: TypeAlias = ValidationSuite | str | Path | Mapping[str, Any] | gx.ExpectationSuite
"""What ``load_suite`` accepts: a block, a block reference or file path, a dict, or a suite."""


def load_suite(source: SuiteSource) -> gx.ExpectationSuite:
    """A ``gx.ExpectationSuite`` from a ``ValidationSuite`` block, a
    ``"flowkit-validation-suite/<name>"`` reference, a JSON file path, an inline dict, or a suite.

    Every expectation is checked here (known type, valid kwargs, severity), so a bad suite fails
    before any data is read.
    """
    if isinstance(source, gx.ExpectationSuite):
        return build_suite(source.to_json_dict(), default_name=source.name)
    if isinstance(source, ValidationSuite):
        return source.get_suite()
    if isinstance(source, Mapping):
        return build_suite(source)
    if isinstance(source, str | Path):
        text = str(source)
        if _looks_like_block_ref(text) and not Path(text).exists():
            return _load_block(text)
        return _load_file(Path(text))
    raise SuiteError(
        f"Cannot load an expectation suite from a {type(source).__name__}. Pass a ValidationSuite "
        "block, a 'flowkit-validation-suite/<name>' reference, a path to a suite JSON file, a "
        "dict, or a gx.ExpectationSuite."
    )


def _looks_like_block_ref(text: str) -> bool:
    return bool(re.fullmatch(r"[a-z0-9-]+/[^/\\]+", text)) and not text.endswith(".json")


def _load_block(ref: str) -> gx.ExpectationSuite:
    from flowkit_prefect._blockref import resolve_block

    try:
        block = resolve_block(ref, ValidationSuite)
    except SuiteError:
        raise
    except ConfigurationError as exc:
        raise SuiteError(str(exc)) from exc
    except ValueError as exc:  # a saved suite that no longer validates
        raise SuiteError(f"The saved block {ref!r} holds an invalid suite: {exc}") from exc
    return block.get_suite()


def _load_file(path: Path) -> gx.ExpectationSuite:
    if not path.is_file():
        raise SuiteError(
            f"No suite file at {path} (working directory {Path.cwd()}). Pass the path of a suite "
            "JSON file, a 'flowkit-validation-suite/<name>' block reference, a dict, or a "
            "gx.ExpectationSuite."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SuiteError(f"Suite file {path} is not valid JSON: {exc}. Fix the file.") from exc
    if not isinstance(data, Mapping):
        raise SuiteError(
            f"Suite file {path} holds a JSON {type(data).__name__}; it must hold an object "
            '{"name": ..., "expectations": [...]}.'
        )
    return build_suite(data, default_name=path.stem)


def build_suite(data: Mapping[str, Any], default_name: str = "suite") -> gx.ExpectationSuite:
    """Check suite JSON entry by entry and build the ``gx.ExpectationSuite``."""
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
    name = data.get("name") or data.get("expectation_suite_name") or default_name
    expectations = [_build_expectation(entry, number) for number, entry in enumerate(entries, 1)]
    try:
        return gx.ExpectationSuite(
            name=str(name),
            expectations=expectations,
            meta=dict(data["meta"]) if isinstance(data.get("meta"), Mapping) else None,
        )
    except ValueError as exc:
        raise SuiteError(f"Invalid expectation suite {name!r}: {exc}") from exc


def _build_expectation(entry: Any, number: int) -> Expectation:
    where = f"Expectation #{number}"
    if not isinstance(entry, Mapping):
        raise SuiteError(f"{where} must be an object with 'type' and 'kwargs', not {entry!r}.")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
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
    where = f"{where} ({_label(type_, kwargs)})"
    if "severity" in meta and meta["severity"] not in ("error", "warning"):
        raise SuiteError(
            f"{where}: meta severity {meta['severity']!r} is not one of 'error', 'warning'."
        )
    try:
        impl = get_expectation_impl(type_)
    except Exception as exc:
        close = difflib.get_close_matches(type_, list_registered_expectation_implementations(), 3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
        raise SuiteError(
            f"{where}: unknown expectation {type_!r}{hint} See "
            "https://greatexpectations.io/expectations for the list."
        ) from exc
    config = {"type": type_, "kwargs": dict(kwargs), "meta": dict(meta)}
    for key in ("notes", "description", "severity"):  # ids belong to a stored suite; not ours
        if entry.get(key) is not None:
            config[key] = entry[key]
    try:
        return ExpectationConfiguration(**config).to_domain_obj()
    except Exception as exc:
        raise SuiteError(f"{where}: {_explain_kwargs_error(exc, impl)}") from exc


def _explain_kwargs_error(exc: Exception, impl: type[Expectation]) -> str:
    """Turn GX's pydantic errors into one line per argument, with the valid argument names."""
    valid = [name for name in impl.__fields__ if name not in _NOT_KWARGS]
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return f"{exc}. Valid kwargs: {', '.join(valid)}."
    problems: dict[str, str] = {}
    for error in errors():
        field = ".".join(str(part) for part in error.get("loc", ()) if part != "__root__")
        if error.get("type") == "value_error.extra":
            problems.setdefault(field, f"unknown kwarg {field!r}")
        elif error.get("type") == "value_error.missing":
            problems.setdefault(field, f"missing required kwarg {field!r}")
        else:
            label = f"{field}: " if field else ""
            problems.setdefault(field, f"{label}{error.get('msg')}")
    return f"{'; '.join(problems.values())}. Valid kwargs: {', '.join(valid)}."


def _label(type_: str, kwargs: Mapping[str, Any]) -> str:
    columns = columns_of(kwargs)
    return f"{type_}({', '.join(columns)})" if columns else type_


def label_of(expectation: Expectation) -> str:
    """``type(column)``, e.g. ``expect_column_values_to_be_between(amount)``."""
    return _label(expectation.expectation_type, expectation.configuration.kwargs)


def columns_of(kwargs: Mapping[str, Any]) -> list[str]:
    """The columns an expectation's domain names (``column``, ``column_A/B``, ``column_list``)."""
    columns: list[str] = []
    for key in _COLUMN_KEYS:
        value = kwargs.get(key)
        if isinstance(value, str):
            columns.append(value)
        elif isinstance(value, list | tuple):
            columns.extend(str(item) for item in value)
    return columns


def severity_of(expectation: Expectation) -> Severity:
    """``meta.severity`` when set; otherwise GX's own severity (critical -> error)."""
    declared = (expectation.meta or {}).get("severity")
    if declared in ("error", "warning"):
        return declared
    native = getattr(expectation, "severity", None)
    native = getattr(native, "value", native)
    return "warning" if _GX_SEVERITY.get(str(native), "error") == "warning" else "error"


def working_copy(suite: gx.ExpectationSuite) -> gx.ExpectationSuite:
    """A copy for one run whose expectations have ids (results name them), leaving ``suite``
    untouched."""
    work = gx.ExpectationSuite(
        name=suite.name, expectations=[copy.copy(expectation) for expectation in suite.expectations]
    )
    for number, expectation in enumerate(work.expectations):
        expectation.id = str(uuid.UUID(int=number))
    return work


def check_columns(
    suite: gx.ExpectationSuite,
    columns: Iterable[str],
    snapshot: Mapping[str, str] | None = None,
) -> None:
    """Raise ``SuiteError`` when an expectation names a column the data does not have."""
    available = [str(column) for column in columns]
    snapshot = snapshot or {}
    present = set(available)
    missing: dict[str, list[str]] = {}
    for expectation in suite.expectations:
        for column in columns_of(expectation.configuration.kwargs):
            if column not in present:
                missing.setdefault(column, []).append(label_of(expectation))
    if not missing:
        return
    lines = []
    for column, labels in missing.items():
        same_case = [name for name in available if name.lower() == column.lower()]
        close = same_case or difflib.get_close_matches(column, available, 1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        was = (
            " It is in the schema snapshot, so it was removed."
            if column in (snapshot or {})
            else ""
        )
        lines.append(f"column {column!r}{hint}, used by {', '.join(labels)}.{was}")
    raise SuiteError(
        f"The suite {suite.name!r} names column(s) the data does not have: {' '.join(lines)} "
        f"Available columns: {', '.join(available) or '(none)'}. Fix the suite's column names or "
        "the data."
    )

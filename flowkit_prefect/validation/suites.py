"""Expectation suites: ``load_suite`` from a block, file, dict or suite, and the checks GX skips.

GX drops an invalid expectation from a suite with a log line and reports a missing column as a
failed expectation; here both are ``SuiteError``s that say what to change. The
``ValidationSuite`` block checks only a suite's structure; its expectations are checked with GX
here, when the suite is used.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeAlias, cast

import great_expectations as gx
from great_expectations.expectations.expectation import Expectation
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
from great_expectations.expectations.registry import (
    get_expectation_impl,
    list_registered_expectation_implementations,
)

from flowkit_prefect.blocks.validation_suite import (
    EXPECTATIONS_URL,
    ValidationSuite,
    check_entry,
    check_suite,
    columns_of,
    expectation_label,
)
from flowkit_prefect.exceptions import ConfigurationError, SuiteError
from flowkit_prefect.validation.results import Severity

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
        return _block_suite(source)
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
    return _block_suite(block, ref)


def _block_suite(block: ValidationSuite, ref: str | None = None) -> gx.ExpectationSuite:
    """The block's suite JSON checked with GX; errors name the block when it has a name."""
    name = block._block_document_name
    data = block.suite
    if block.monitors is not None:  # the block's monitors win over the suite JSON's own
        data = {**data, "meta": {**(data.get("meta") or {}), "monitors": block.monitors}}
    try:
        return build_suite(data, default_name=name or "suite")
    except SuiteError as exc:
        if ref is None and name is None:
            raise
        ref = ref or f"{block.get_block_type_slug()}/{name}"
        raise SuiteError(f"The saved block {ref!r} holds an invalid suite: {exc}") from exc


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
    """Check suite JSON entry by entry and build the ``gx.ExpectationSuite``: the structure as
    the ``ValidationSuite`` block checks it, then each expectation with GX."""
    entries = check_suite(data)
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
    type_, kwargs, meta, where = check_entry(entry, number)
    try:
        impl = get_expectation_impl(type_)
    except Exception as exc:
        close = difflib.get_close_matches(type_, list_registered_expectation_implementations(), 3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
        raise SuiteError(
            f"{where}: unknown expectation {type_!r}{hint} See {EXPECTATIONS_URL} for the list."
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
    # GX expectations are pydantic v1 models at runtime, where __fields__ is a dict; the stubs
    # resolve them to pydantic v2, where it is a deprecated property.
    fields: Mapping[str, Any] = getattr(impl, "__fields__", {})
    valid = [name for name in fields if name not in _NOT_KWARGS]
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return f"{exc}. Valid kwargs: {', '.join(valid)}."
    problems: dict[str, str] = {}
    for error in cast("Iterable[Mapping[str, Any]]", errors()):
        field = ".".join(str(part) for part in error.get("loc", ()) if part != "__root__")
        if error.get("type") == "value_error.extra":
            problems.setdefault(field, f"unknown kwarg {field!r}")
        elif error.get("type") == "value_error.missing":
            problems.setdefault(field, f"missing required kwarg {field!r}")
        else:
            label = f"{field}: " if field else ""
            problems.setdefault(field, f"{label}{error.get('msg')}")
    return f"{'; '.join(problems.values())}. Valid kwargs: {', '.join(valid)}."


def label_of(expectation: Expectation) -> str:
    """``type(column)``, e.g. ``expect_column_values_to_be_between(amount)``."""
    return expectation_label(expectation.expectation_type, expectation.configuration.kwargs)


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

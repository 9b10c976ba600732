"""Vet the model's proposed expectations with GX itself before they enter a draft suite.

A proposal is kept only if GX knows its type, accepts its kwargs, every column it names is in
the sample, and GX can evaluate it on the sample; each refusal is recorded with its reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, cast

import pandas as pd
from great_expectations.exceptions.exceptions import ExpectationNotFoundError
from great_expectations.expectations.expectation import Expectation
from great_expectations.expectations.registry import get_expectation_impl

from flowkit_prefect.validation._draft_models import (
    DraftedExpectation,
    ProposedExpectation,
    RejectedExpectation,
)
from flowkit_prefect.validation._gx_sample import SampleBatch

_COLUMN_KEYS = ("column", "column_A", "column_B")
_RESERVED_KWARGS = frozenset({"id", "meta", "severity", "rendered_content", "batch_id"})
_GX_SEVERITY = {"error": "critical", "warning": "warning"}
_TYPE_NAME = re.compile(r"expect_[a-z0-9_]+")


def vet(
    proposals: list[ProposedExpectation],
    sample: pd.DataFrame,
    limit: int,
    drafted_by: str,
) -> tuple[list[Expectation], list[DraftedExpectation], list[RejectedExpectation]]:
    """GX expectation objects and records of the accepted proposals, and the rejected ones."""
    columns = {str(c) for c in sample.columns}
    batch = SampleBatch(sample)
    built: list[Expectation] = []
    accepted: list[DraftedExpectation] = []
    rejected: list[RejectedExpectation] = []
    seen: set[tuple[str, str]] = set()
    with batch.checking():
        for index, proposal in enumerate(proposals):
            outcome = (
                RejectedExpectation(
                    type=proposal.type,
                    kwargs=proposal.kwargs_json,
                    reason=f"beyond the limit of {limit} expectations",
                )
                if index >= limit
                else build(proposal, columns, drafted_by)
            )
            if isinstance(outcome, RejectedExpectation):
                rejected.append(outcome)
                continue
            expectation, kwargs = outcome
            kind = expectation.expectation_type
            key = (kind, json.dumps(kwargs, sort_keys=True, default=str))
            if key in seen:
                reason = "duplicate of an earlier proposal"
                rejected.append(RejectedExpectation(type=kind, kwargs=kwargs, reason=reason))
                continue
            try:
                passes, note = batch.check(expectation)
            except Exception as exc:  # evaluation errors, e.g. the mean of a text column
                reason = f"GX cannot evaluate it on the sample: {str(exc).splitlines()[0][:300]}"
                rejected.append(RejectedExpectation(type=kind, kwargs=kwargs, reason=reason))
                continue
            seen.add(key)
            expectation.meta = {**(expectation.meta or {}), "sample_passes": passes}
            built.append(expectation)
            accepted.append(
                DraftedExpectation(
                    type=kind,
                    kwargs=kwargs,
                    severity=proposal.severity,
                    rationale=proposal.rationale,
                    sample_passes=passes,
                    sample_note=note or "",
                )
            )
    return built, accepted, rejected


def build(
    proposal: ProposedExpectation, columns: set[str], drafted_by: str
) -> tuple[Expectation, dict[str, Any]] | RejectedExpectation:
    """The GX expectation for a proposal and its kwargs, or why GX (or the sample) refuses it."""
    kind = proposal.type.strip()
    try:
        kwargs = json.loads(proposal.kwargs_json)
    except json.JSONDecodeError as exc:
        return RejectedExpectation(
            type=kind, kwargs=proposal.kwargs_json, reason=f"kwargs are not JSON: {exc}"
        )
    if not isinstance(kwargs, dict):
        return RejectedExpectation(
            type=kind,
            kwargs=proposal.kwargs_json,
            reason=f"kwargs must be a JSON object, got {type(kwargs).__name__}",
        )

    def reject(reason: str) -> RejectedExpectation:
        return RejectedExpectation(type=kind, kwargs=kwargs, reason=reason)

    if not _TYPE_NAME.fullmatch(kind):
        return reject("not a GX expectation name (expect_... in snake_case)")
    try:
        cls = get_expectation_impl(kind)
    except ExpectationNotFoundError:
        return reject(f"unknown expectation type: GX has no expectation named {kind!r}")
    reserved = sorted(_RESERVED_KWARGS & set(kwargs))
    if reserved:
        return reject(f"kwargs may not set {', '.join(reserved)} (the drafter sets them)")
    meta = {
        "severity": proposal.severity,
        "rationale": proposal.rationale,
        "drafted_by": drafted_by,
        "sample_passes": False,
    }
    extra: dict[str, Any] = {"meta": meta}
    if "severity" in getattr(cls, "__fields__", {}):  # GX's own severity, where it has one
        extra["severity"] = _GX_SEVERITY[proposal.severity]
    try:
        expectation = cls(**kwargs, **extra)
    except Exception as exc:  # GX's pydantic validation, or its own configuration checks
        return reject(f"GX rejects the kwargs: {_gx_error(exc)}")
    missing = [c for c in _named_columns(kwargs) if c not in columns]
    if missing:
        return reject(f"column(s) not in the sample: {', '.join(map(str, missing))}")
    return expectation, kwargs


def _gx_error(exc: Exception) -> str:
    """GX's validation error in one line."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            return "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', ())) or 'kwargs'}: {e.get('msg')}"
                for e in cast("Iterable[Mapping[str, Any]]", errors())
            )
        except Exception:  # not a pydantic error after all
            pass
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _named_columns(kwargs: dict[str, Any]) -> list[Any]:
    named = [kwargs[k] for k in _COLUMN_KEYS if k in kwargs]
    column_list = kwargs.get("column_list")
    if isinstance(column_list, list):
        named += column_list
    return named

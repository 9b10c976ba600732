"""Split rows into valid and quarantined, vectorized: no Python loop over rows.

Two steps, so a checkpoint can publish its counts while the frames are built: ``plan_split``
(cheap: which rows, and why) and ``apply_split`` (the copy of every kept row). Each failing
expectation sets one bit in a per-row code; the reason text is built once per distinct code (a
handful) and spread to the rows with ``np.unique(..., return_inverse=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flowkit_prefect.exceptions import FlowkitError
from flowkit_prefect.validation.results import FAILED_COLUMN

_COPY_ON_WRITE = int(pd.__version__.split(".")[0]) >= 3


@dataclass(frozen=True)
class SplitPlan:
    """Which rows to quarantine (positions, ascending) and the reason text of each."""

    rows: int
    bad: np.ndarray  # bool, one per row
    bad_positions: np.ndarray
    reasons: np.ndarray  # object, aligned with bad_positions

    @property
    def quarantined_rows(self) -> int:
        return int(self.bad_positions.size)

    @property
    def valid_rows(self) -> int:
        return self.rows - self.quarantined_rows


def plan_split(rows: int, failures: Sequence[tuple[str, np.ndarray]]) -> SplitPlan:
    """Rows at any failure's positions are quarantined, each with the "; "-joined labels of the
    expectations it failed."""
    bad = np.zeros(rows, dtype=bool)
    for _, positions in failures:
        bad[positions] = True
    bad_positions = np.flatnonzero(bad)
    reasons = _reasons(bad_positions, failures) if bad_positions.size else np.empty(0, dtype=object)
    return SplitPlan(rows=rows, bad=bad, bad_positions=bad_positions, reasons=reasons)


def apply_split(data: pd.DataFrame, plan: SplitPlan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(valid, quarantined)`` per ``plan``. Both keep ``data``'s index and are new frames
    (``data`` is never modified); ``quarantined`` gains ``_flowkit_failed``. Raises when a row
    would be lost or duplicated."""
    if len(data) != plan.rows:
        raise FlowkitError(
            f"Split plan for {plan.rows} rows applied to {len(data)}; this is a flowkit bug."
        )
    if plan.quarantined_rows == 0:
        valid, quarantined = data.copy(deep=not _COPY_ON_WRITE), empty_quarantine(data)
    else:
        valid = _keep(data, ~plan.bad)
        quarantined = data.iloc[plan.bad_positions].copy(deep=not _COPY_ON_WRITE)
        quarantined[FAILED_COLUMN] = plan.reasons
    check_nothing_lost(plan.rows, valid, quarantined, expected_quarantined=plan.quarantined_rows)
    return valid, quarantined


def split_rows(
    data: pd.DataFrame, failures: Sequence[tuple[str, np.ndarray]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``plan_split`` and ``apply_split`` in one call."""
    return apply_split(data, plan_split(len(data), failures))


def empty_quarantine(data: pd.DataFrame) -> pd.DataFrame:
    """No rows, ``data``'s columns and dtypes plus ``_flowkit_failed``."""
    empty = data.iloc[:0].copy()
    empty[FAILED_COLUMN] = pd.Series([], index=empty.index, dtype=object)
    return empty


def check_nothing_lost(
    rows: int,
    valid: pd.DataFrame,
    quarantined: pd.DataFrame,
    expected_quarantined: int | None = None,
) -> None:
    """Every input row is in exactly one of ``valid`` and ``quarantined``."""
    counts_add_up = len(valid) + len(quarantined) == rows
    expected = expected_quarantined is None or len(quarantined) == expected_quarantined
    if not (counts_add_up and expected):
        raise FlowkitError(
            f"Row accounting failed: {rows} rows in, {len(valid)} valid + {len(quarantined)} "
            "quarantined out. Nothing was passed on; this is a flowkit bug, please report it."
        )


def _keep(data: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """``data[mask]``, filtering each column's array directly (faster than a row ``take``)."""
    columns = {name: data[name].array[mask] for name in data.columns}
    kept = pd.DataFrame(columns, index=data.index[mask], columns=data.columns, copy=False)
    kept.attrs = dict(data.attrs)
    return kept


def _reasons(bad_positions: np.ndarray, failures: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """Per quarantined row (in ``bad_positions`` order), the labels it failed, joined."""
    words = (len(failures) + 63) // 64
    codes = np.zeros((bad_positions.size, words), dtype=np.uint64)
    for number, (_, positions) in enumerate(failures):
        rank = np.searchsorted(bad_positions, positions)
        codes[rank, number // 64] |= np.uint64(1) << np.uint64(number % 64)
    distinct, inverse = np.unique(codes, axis=0, return_inverse=True)
    texts = np.empty(len(distinct), dtype=object)
    for row, code in enumerate(distinct):
        texts[row] = "; ".join(
            label
            for number, (label, _) in enumerate(failures)
            if (int(code[number // 64]) >> (number % 64)) & 1
        )
    return texts[inverse.reshape(-1)]

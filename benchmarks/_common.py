"""What the benchmarks share: the Prefect server they run against, and the headline records.

Scripts run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path``.

Each script prints its own detail and also calls ``report(...)`` for its headline figures (the
ratios it holds against a target). ``report`` appends one JSON line per figure to the file named
by ``FLOWKIT_BENCH_RESULTS`` (``run_all.py`` sets it; unset, nothing is written), so a script
stays runnable on its own and ``make bench`` gathers every figure into one table.
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import re
from collections.abc import Callable, Iterator
from typing import Any, Literal

RESULTS_ENV = "FLOWKIT_BENCH_RESULTS"
"""Names the JSON-lines file that ``report`` appends to."""

Verdict = Literal["MET", "NOT MET", "info", "ERROR"]

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "==": operator.eq,
}
_TARGET = re.compile(r"^\s*(<=|>=|==|<|>)\s*([-+0-9.eE]+)")


@contextlib.contextmanager
def prefect_backend() -> Iterator[str]:
    """The server in ``PREFECT_API_URL`` when set, otherwise a temporary one (loopback)."""
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield f"{PREFECT_API_URL.value()} (temporary, prefect_test_harness)"


def judge(value: float | None, target: str | None) -> Verdict:
    """MET / NOT MET for ``value`` against a target such as ``"<= 1.1"`` or ``">= 0.85"``
    (trailing words, e.g. a unit, are ignored); ``info`` without a target."""
    if target is None:
        return "info"
    match = _TARGET.match(target)
    if match is None:
        raise ValueError(f"target {target!r} is not '<op> <number>'")
    if value is None:
        return "NOT MET"
    return "MET" if _OPERATORS[match.group(1)](value, float(match.group(2))) else "NOT MET"


def report(
    figure: str,
    ours: float | None,
    baseline: float | None,
    ratio: float | None = None,
    target: str | None = None,
    verdict: Verdict | None = None,
    *,
    unit: str = "s",
    on: Literal["ratio", "ours"] = "ratio",
    note: str = "",
) -> dict[str, Any]:
    """Record one headline figure: ours against the baseline of the same run.

    ``ratio`` defaults to ours / baseline. The verdict, unless given, is ``target`` checked
    against the ratio (or against ``ours`` with ``on="ours"``, e.g. a wait in seconds). Returns
    the record, and appends it as a JSON line to the file in ``FLOWKIT_BENCH_RESULTS`` if set.
    """
    if ratio is None and ours is not None and baseline:
        ratio = ours / baseline
    if verdict is None:
        verdict = judge(ours if on == "ours" else ratio, target)
    record = {
        "figure": figure,
        "ours": ours,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "target_on": on,
        "verdict": verdict,
        "unit": unit,
        "note": note,
    }
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    return record


def run_main(main: Callable[[], int]) -> None:
    """Exit with ``main()``'s status: 130 on Ctrl-C, 1 with the traceback on an error."""
    import sys
    import traceback

    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:
        traceback.print_exc()
        sys.exit(1)

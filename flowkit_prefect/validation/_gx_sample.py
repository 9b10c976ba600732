"""The drafter's sample as a GX batch in a private ephemeral context, and the global GX lock.

GX keeps one process-wide current context; drafting must neither replace the caller's nor
leave its own behind, so it lends one only while checking, under a lock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
from great_expectations.core.expectation_validation_result import ExpectationValidationResult
from great_expectations.data_context.data_context.abstract_data_context import (
    AbstractDataContext,
)
from great_expectations.data_context.data_context.context_factory import (
    project_manager,
    set_context,
)
from great_expectations.data_context.data_context.ephemeral_data_context import (
    EphemeralDataContext,
)
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.exceptions.exceptions import DataContextRequiredError
from great_expectations.expectations.expectation import Expectation

GX_GLOBAL_LOCK = threading.Lock()
"""Held while a sample batch lends GX its context as the current one."""


def current_gx_context() -> AbstractDataContext | None:
    """GX's process-wide current context, if one is set."""
    try:
        return project_manager.get_current_project()
    except DataContextRequiredError:
        return None


class SampleBatch:
    """The sample as a GX batch in a private ephemeral context.

    Built directly rather than with ``gx.get_context``, which would replace the process-wide
    current context that the caller may rely on. GX's validator still asks the current context
    whether it runs on GX Cloud, so when none is set, ``checking`` lends it this one meanwhile.
    """

    def __init__(self, sample: pd.DataFrame) -> None:
        self.context = EphemeralDataContext(
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
            )
        )
        asset = self.context.data_sources.add_pandas("draft-sample").add_dataframe_asset("sample")
        definition = asset.add_batch_definition_whole_dataframe("whole-sample")
        self.batch = definition.get_batch(batch_parameters={"dataframe": sample})

    @contextmanager
    def checking(self) -> Iterator[None]:
        """Make sure a current GX context exists while checking; put things back after."""
        with GX_GLOBAL_LOCK:
            lent = current_gx_context() is None
            if lent:
                set_context(self.context)
            try:
                yield
            finally:
                if lent and current_gx_context() is self.context:
                    set_context(None)

    def check(self, expectation: Expectation) -> tuple[bool, str | None]:
        """(passes, note) on the sample; raises ValueError when GX cannot evaluate it."""
        result = self.batch.validate(expectation)
        error = _raised(result)
        if error is not None:
            raise ValueError(error)
        return bool(result.success), None if result.success else _note(result)


def _raised(result: ExpectationValidationResult) -> str | None:
    """The message of an exception GX hit while evaluating, if any."""
    info: dict[str, Any] = result.exception_info or {}
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            return str(entry.get("exception_message") or "unknown error")
    return None


def _note(result: ExpectationValidationResult) -> str:
    """What GX observed on the sample, for an expectation it fails."""
    details: dict[str, Any] = result.result or {}
    if "observed_value" in details:
        return f"observed value: {json.dumps(details['observed_value'], default=str)[:200]}"
    if "unexpected_count" in details:
        return (
            f"{details['unexpected_count']} unexpected of {details.get('element_count', '?')}"
            f" rows, e.g. {json.dumps(details.get('partial_unexpected_list', [])[:3], default=str)}"
        )
    return "the sample does not meet it"

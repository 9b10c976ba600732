"""The validation suite block: a Great Expectations suite stored in Prefect.

Great Expectations is imported only when a suite is checked or used (it takes seconds to import),
so registering and listing blocks stays fast.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, field_validator

from flowkit_prefect.exceptions import SuiteError


class ValidationSuite(Block):
    """A Great Expectations suite stored as a Prefect block, so flows load it by name.

    ``suite`` is GX's suite JSON. Mark an expectation as a warning (reported, never failing the
    run) with ``"meta": {"severity": "warning"}``; every other expectation is an error.

    Example:
        ```python
        from flowkit_prefect.validation import ValidationSuite

        suite_block = ValidationSuite.load("BLOCK_NAME")
        suite = suite_block.get_suite()
        ```
    """

    _block_type_name = "Flowkit Validation Suite"
    _block_type_slug = "flowkit-validation-suite"
    _description = "A Great Expectations expectation suite used by flowkit validation checkpoints."
    _documentation_url = "https://github.com/flowkit-prefect/flowkit-prefect#data-validation"

    suite: dict[str, Any] = Field(
        description=(
            'GX expectation suite JSON: {"name": ..., "expectations": [{"type": ..., "kwargs": '
            '{...}, "meta": {"severity": "warning"}}]}.'
        ),
    )

    @field_validator("suite")
    @classmethod
    def _suite_is_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        from flowkit_prefect.validation.suites import build_suite

        try:
            build_suite(value)
        except SuiteError as exc:
            raise ValueError(str(exc)) from exc
        return value

    def get_suite(self) -> Any:
        """The suite as a ``gx.ExpectationSuite``."""
        from flowkit_prefect.validation.suites import build_suite

        return build_suite(self.suite, default_name=self._block_document_name or "suite")

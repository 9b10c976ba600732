"""The document checkpoint of ``rag-ingest``: documents that fail it are quarantined and reported,
not embedded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, model_validator

from flowkit_prefect.exceptions import ConfigurationError
from flowkit_prefect.retrieval.types import SkippedSource, SourceDocument

if TYPE_CHECKING:  # pandas loads when documents are checked, not when the flow is imported
    import pandas as pd

CHECKPOINT_NAME = "rag-ingest-documents"


class DocumentChecks(BaseModel):
    """What every document must satisfy before it is chunked and embedded."""

    enabled: bool = Field(default=True, description="Run the document checkpoint.")
    min_chars: int = Field(default=1, ge=0, description="Fewest characters of text.")
    max_chars: int = Field(default=2_000_000, ge=1, description="Most characters of text.")
    required_metadata: list[str] = Field(
        default_factory=list, description="Metadata keys every document must have (non-empty)."
    )

    @model_validator(mode="after")
    def _bounds(self) -> DocumentChecks:
        if self.min_chars > self.max_chars:
            raise ConfigurationError(
                f"min_chars ({self.min_chars}) is above max_chars ({self.max_chars})."
            )
        return self


def document_suite(checks: DocumentChecks) -> dict[str, Any]:
    """The checks as a GX expectation suite over one row per document."""
    expectations: list[dict[str, Any]] = [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "source"}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {
                "column": "chars",
                "min_value": checks.min_chars,
                "max_value": checks.max_chars,
            },
        },
    ]
    expectations += [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": f"meta.{key}"}}
        for key in checks.required_metadata
    ]
    return {"name": CHECKPOINT_NAME, "expectations": expectations}


def _frame(documents: list[SourceDocument], checks: DocumentChecks) -> pd.DataFrame:
    data: dict[str, list[Any]] = {
        "source": [d.source for d in documents],
        "chars": [len(d.text.strip()) for d in documents],
    }
    for key in checks.required_metadata:
        data[f"meta.{key}"] = [
            None if d.metadata.get(key) in (None, "") else str(d.metadata[key]) for d in documents
        ]
    import pandas as pd

    return pd.DataFrame(data)


def check_documents(
    documents: list[SourceDocument], checks: DocumentChecks
) -> tuple[list[SourceDocument], list[SkippedSource]]:
    """Run the checkpoint (a ``validation-checkpoint`` task run with its artifacts and event);
    returns the documents that passed and the quarantined ones as skipped, with the reason."""
    if not checks.enabled or not documents:
        return documents, []
    # Imported here: Great Expectations takes seconds to import, and only ingests need it.
    from flowkit_prefect.validation import FAILED_COLUMN, validate_dataframe

    result = validate_dataframe(
        _frame(documents, checks),
        document_suite(checks),
        name=CHECKPOINT_NAME,
        policy="quarantine",
    )
    failed = dict(zip(result.quarantined["source"], result.quarantined[FAILED_COLUMN], strict=True))
    kept = [d for d in documents if d.source not in failed]
    skipped = [
        SkippedSource(source=source, reason=f"failed the document checkpoint: {why}")
        for source, why in failed.items()
    ]
    return kept, skipped

"""Exceptions raised by flowkit-prefect.

Every error says what went wrong and what to do about it. Foreign exceptions (Qdrant, llama.cpp,
LangChain, Great Expectations, pandas) are translated at one boundary with ``raise ... from exc``::

    FlowkitError
    ├── ConfigurationError          a block or parameter is wrong; fix the configuration
    │   ├── MissingDependencyError  an optional extra is not installed
    │   └── SuiteError              an expectation suite is invalid or names missing columns
    ├── SourceNotFoundError         a documents folder or file does not exist
    ├── CollectionDimensionError    the Qdrant collection stores vectors of another size
    ├── StoreBusyError              the embedded Qdrant store stayed locked past the timeout
    ├── ModelOutputError            the chat model's output could not be used
    │   ├── PlanError               a plan is empty, cyclic or names unknown steps/executors
    │   └── SuiteDraftError         the model's proposed expectation suite is unusable
    ├── BudgetExceededError         a run's token or cost budget is spent
    ├── SandboxError                the code sandbox itself failed (no engine, no interpreter)
    ├── DataReadError               a dataset is missing, empty, malformed or of unknown type
    ├── ExpectationRunError         GX could not evaluate an expectation (often a wrong dtype)
    ├── ValidationFailedError       a validation checkpoint failed by its policy
    │   └── DataAnomalyError        a data-quality monitor flagged the batch against its history
    └── SchemaDriftError            the data's columns or dtypes left the schema snapshot
"""

from __future__ import annotations

from typing import Any


class FlowkitError(Exception):
    """Base class of every error raised by flowkit-prefect."""


class ConfigurationError(FlowkitError):
    """A block, setting or parameter is invalid; the message says which and how to fix it."""


class MissingDependencyError(ConfigurationError):
    """An optional dependency is needed for the configured provider."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package. Install it with "
            f"`pip install 'flowkit-prefect[{extra}]'` (or `make install`)."
        )
        self.package = package
        self.extra = extra


class SourceNotFoundError(FlowkitError):
    """A documents folder or file to ingest does not exist."""


class CollectionDimensionError(FlowkitError):
    """An existing collection stores vectors of a size the embedder does not produce."""

    def __init__(self, collection: str, stored: int | None, expected: int) -> None:
        super().__init__(
            f"Qdrant collection '{collection}' stores {stored}-dimensional vectors but the "
            f"embedder produces {expected}-dimensional ones. Ingest into a new collection name, "
            f"or pass recreate_collection=True to drop and rebuild '{collection}' with this "
            "embedder."
        )
        self.collection = collection
        self.stored = stored
        self.expected = expected


class StoreBusyError(FlowkitError):
    """Another run held the embedded Qdrant store for longer than the configured wait."""


class StoreUnavailableError(FlowkitError):
    """A Qdrant server refused the connection, timed out or answered with a server error."""


class ModelOutputError(FlowkitError):
    """The chat model returned output that could not be parsed into the expected shape."""


class BudgetExceededError(FlowkitError):
    """The run's token or cost budget is spent; no further model call is made."""


class PlanError(ModelOutputError):
    """A plan cannot be executed: empty, cyclic, or naming unknown steps or executors."""


class SandboxError(FlowkitError):
    """The code sandbox itself could not run: the Docker engine or image is unavailable, no
    usable Python interpreter was found, or the harness failed before loading the code.

    Bad generated code is never this error: it is a verdict in the ``SandboxReport``.
    """


class SuiteDraftError(ModelOutputError):
    """The model gave no usable list of proposed expectations for a suite draft."""


class SuiteError(ConfigurationError):
    """An expectation suite cannot be used: unreadable, an unknown expectation, bad kwargs, or a
    column the data does not have. The message names the expectation and what to change."""


class DataReadError(FlowkitError):
    """A dataset cannot be read into a table (missing, empty, malformed, or of an unknown type),
    or is a table a checkpoint cannot validate (duplicate or non-string column names)."""


class ExpectationRunError(FlowkitError):
    """Great Expectations could not evaluate an expectation on this data, most often because a
    column has another dtype than the expectation needs (numbers stored as text)."""


class ValidationFailedError(FlowkitError):
    """A validation checkpoint failed by its policy; ``result`` holds the full report (a
    ``CheckpointResult`` of the validation package)."""

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> tuple[type, tuple[str, Any]]:
        return type(self), (str(self), self.result)


class DataAnomalyError(ValidationFailedError):
    """An error-severity data-quality monitor flagged the batch (a volume drop, a null-rate
    jump, a shifted distribution, stale data); ``result.anomalies`` lists what it saw."""


class SchemaDriftError(FlowkitError):
    """The data's columns or dtypes differ from the schema snapshot and the drift policy is
    "fail"; ``drift`` lists the differences (a ``SchemaDrift``) and ``result`` holds the
    checkpoint's report (a ``CheckpointResult``)."""

    def __init__(self, message: str, drift: Any, result: Any) -> None:
        super().__init__(message)
        self.drift = drift
        self.result = result

    def __reduce__(self) -> tuple[type, tuple[str, Any, Any]]:
        return type(self), (str(self), self.drift, self.result)

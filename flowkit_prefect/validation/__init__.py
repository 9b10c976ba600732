"""Data validation checkpoints on Great Expectations 1.x: tasks that pass good rows on,
quarantine bad ones, and stop a run with a clear report when the data is wrong."""

from flowkit_prefect.exceptions import (
    DataAnomalyError,
    DataReadError,
    ExpectationRunError,
    SchemaDriftError,
    SuiteError,
    ValidationFailedError,
)
from flowkit_prefect.validation.checkpoint import run_checkpoint, validate_dataframe, validate_file
from flowkit_prefect.validation.drafting import SuiteDraft, draft_suite
from flowkit_prefect.validation.metrics import DatasetMetrics, measure
from flowkit_prefect.validation.monitors import (
    DistributionMonitor,
    FreshnessMonitor,
    MonitorConfig,
    NullRateMonitor,
    VolumeMonitor,
)
from flowkit_prefect.validation.readers import read_dataset
from flowkit_prefect.validation.results import (
    FAILED_COLUMN,
    CheckpointResult,
    CheckpointSummary,
    DriftPolicy,
    ExpectationRow,
    MonitorResult,
    Policy,
    SchemaDrift,
    Severity,
)
from flowkit_prefect.validation.suites import SuiteSource, ValidationSuite, load_suite

__all__ = [
    "FAILED_COLUMN",
    "CheckpointResult",
    "CheckpointSummary",
    "DataAnomalyError",
    "DataReadError",
    "DatasetMetrics",
    "DistributionMonitor",
    "DriftPolicy",
    "ExpectationRow",
    "ExpectationRunError",
    "FreshnessMonitor",
    "MonitorConfig",
    "MonitorResult",
    "NullRateMonitor",
    "Policy",
    "SchemaDrift",
    "SchemaDriftError",
    "Severity",
    "SuiteDraft",
    "SuiteError",
    "SuiteSource",
    "ValidationFailedError",
    "ValidationSuite",
    "VolumeMonitor",
    "draft_suite",
    "load_suite",
    "measure",
    "read_dataset",
    "run_checkpoint",
    "validate_dataframe",
    "validate_file",
]

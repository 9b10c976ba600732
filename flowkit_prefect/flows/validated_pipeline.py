"""The ``validated-pipeline`` template: read a dataset, validate it, write the valid rows and the
quarantined rows (with reasons), report."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from flowkit_prefect._atomic import atomic_path
from flowkit_prefect.flows._lineage import file_asset, materialize
from flowkit_prefect.validation import CheckpointResult, validate_file
from flowkit_prefect.validation.report import outcome_event


class PipelineReport(BaseModel):
    """What the pipeline read, kept and set aside, and where it wrote them."""

    source: str
    success: bool
    input_rows: int
    valid_rows: int
    quarantined_rows: int
    errors: int
    warnings: int
    valid_path: str
    quarantined_path: str


def _write(frame: pd.DataFrame, path: Path) -> None:
    """Write in the format of ``path``'s suffix, atomically: a failed run leaves no half file."""
    with atomic_path(path) as temporary:
        if path.suffix == ".parquet":
            frame.to_parquet(temporary, index=False)
        elif path.suffix == ".jsonl":
            frame.to_json(temporary, orient="records", lines=True)
        else:
            frame.to_csv(temporary, index=False)


@task(name="write-outputs", cache_policy=NO_CACHE)
def write_outputs(
    result: CheckpointResult, output_dir: Path, stem: str, suffix: str
) -> tuple[Path, Path]:
    """Valid rows in the input's format; quarantined rows (with ``_flowkit_failed``) as CSV."""
    valid_path = output_dir / f"{stem}.valid{suffix}"
    quarantined_path = output_dir / f"{stem}.quarantined.csv"
    _write(result.valid, valid_path)
    _write(result.quarantined, quarantined_path)
    return valid_path, quarantined_path


@flow(name="validated-pipeline", log_prints=True, persist_result=True)
def validated_pipeline(
    input_path: str = "deployments/sample-data/orders.csv",
    suite: str = "deployments/suites/orders.json",
    output_dir: str = "./.flowkit/validated",
    policy: Literal["fail", "quarantine", "warn"] = "quarantine",
    schema_snapshot: str | None = "./.flowkit/validated/orders.schema.json",
    drift_policy: Literal["warn", "fail"] = "warn",
    dataset: str | None = None,
) -> PipelineReport:
    """Read a dataset, run the checkpoint, write valid and quarantined rows, report.

    Args:
        input_path: The dataset: a .csv, .parquet or .jsonl file.
        suite: The expectation suite: a GX suite JSON file, or a validation suite block as
            'flowkit-validation-suite/<name>'.
        output_dir: Where the valid and quarantined rows are written.
        policy: 'quarantine' sets failing rows aside, 'fail' stops the run on any error-severity
            failure, 'warn' reports and keeps every row.
        schema_snapshot: JSON file of the expected columns and types (written on the first run);
            empty to skip the schema-drift check.
        drift_policy: What schema drift does: 'warn' reports it, 'fail' stops the run.
        dataset: The dataset's name: its checkpoint, artifacts and the metric history the
            suite's monitors compare against (default: the file's name without suffix). Give
            each day's file of one dataset the same name.
    """
    source = Path(input_path)
    result = validate_file(
        source,
        suite,
        name=dataset or source.stem,
        policy=policy,
        schema_snapshot=schema_snapshot or None,
        drift_policy=drift_policy,
    )
    suffix = source.suffix if source.suffix in (".csv", ".parquet", ".jsonl") else ".csv"
    valid_path, quarantined_path = write_outputs(result, Path(output_dir), source.stem, suffix)
    valid_asset, quarantined_asset = file_asset(valid_path), file_asset(quarantined_path)
    # the outcome as the checkpoint's event names it: passed, quarantined or failed
    verdict = outcome_event(result, failed=False).rsplit(".", 1)[-1]
    counts = {"checkpoint": result.name, "verdict": verdict, "input_rows": result.input_rows}
    materialize(
        [valid_asset, quarantined_asset],
        [file_asset(source)],
        {
            valid_asset.key: {**counts, "rows": len(result.valid)},
            quarantined_asset.key: {**counts, "rows": len(result.quarantined)},
        },
        "record-outputs",
    )
    report = PipelineReport(
        source=str(source),
        success=result.success,
        input_rows=result.input_rows,
        valid_rows=len(result.valid),
        quarantined_rows=len(result.quarantined),
        errors=result.errors,
        warnings=result.warnings,
        valid_path=str(valid_path),
        quarantined_path=str(quarantined_path),
    )
    create_markdown_artifact(
        key="validated-pipeline-report",
        markdown=(
            f"## Validated pipeline: `{source.name}`\n\n"
            f"| rows in | valid | quarantined | failed expectations (error / warning) |\n"
            f"|---|---|---|---|\n| {report.input_rows} | {report.valid_rows} | "
            f"{report.quarantined_rows} | {report.errors} / {report.warnings} |\n\n"
            f"Valid rows: `{valid_path}`  \nQuarantined rows (with reasons): `{quarantined_path}`"
        ),
        description="Rows in, kept and set aside, and where they went",
    )
    print(
        f"{source.name}: {report.input_rows} rows -> {report.valid_rows} valid, "
        f"{report.quarantined_rows} quarantined ({quarantined_path})"
    )
    return report

"""GX Data Docs for one checkpoint run: a static site on the local file system.

The result is stored in the run's ephemeral (in-memory) context, as ``ValidationDefinition.run``
would, and the site built with ``build_data_docs`` in a temporary sibling folder, swapped in
only when complete, so a failed build leaves the previous site (or nothing) behind. The
folder holds the docs of the latest run: it is replaced on each run, and only when it is empty
or a site flowkit wrote (it carries a marker file), never another folder.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path

from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

from flowkit_prefect.exceptions import ConfigurationError
from flowkit_prefect.validation.engine import GXRun
from flowkit_prefect.validation.suites import working_copy

SITE_NAME = "flowkit"
MARKER = ".flowkit-data-docs"


def write_data_docs(run: GXRun, directory: str | Path, run_name: str) -> str:
    """Build the site for ``run`` into ``directory``; returns the path of its index.html."""
    target = Path(directory).expanduser().resolve()
    if target.exists() and not _replaceable(target):
        raise ConfigurationError(
            f"{target} is not empty and is not a Data Docs folder flowkit wrote; pass a folder "
            "of its own as data_docs_dir."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the site is meant to be read
    try:
        _build(run, staging, run_name)
        (staging / MARKER).write_text("Data Docs written by a flowkit validation checkpoint.\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target / "index.html")


def _replaceable(folder: Path) -> bool:
    return folder.is_dir() and ((folder / MARKER).exists() or not any(folder.iterdir()))


def _build(run: GXRun, base: Path, run_name: str) -> None:
    context = run.context
    context.add_data_docs_site(
        SITE_NAME,
        {
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(base),
            },
        },
    )
    if not run.stored:
        suite = context.suites.add(working_copy(run.suite))
        run_id = RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.UTC))
        # as ValidationDefinition.run does, with validation_time in GX's declared str format
        run.result.meta["run_id"] = run_id
        run.result.meta["validation_time"] = run_id.run_time.strftime("%Y%m%dT%H%M%S.%fZ")
        identifier = ValidationResultIdentifier(
            batch_identifier=run.batch_id,
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite.name),
            run_id=run_id,
        )
        context.validation_results_store.store_validation_results(run.result, identifier)
    context.build_data_docs(site_names=[SITE_NAME])
    if not (base / "index.html").is_file():
        raise RuntimeError("GX built no index.html")

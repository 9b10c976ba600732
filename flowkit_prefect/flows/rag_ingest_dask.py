"""``rag-ingest`` with its embedding batches on a Dask cluster (``prefect-dask``): the entry point
of the ``rag-ingest/dask`` deployment, and ``rag_ingest_dask`` for your own code.

The cluster is ``FLOWKIT_DASK_ADDRESS`` when set (an existing scheduler), else a local
multi-process cluster of ``FLOWKIT_DASK_WORKERS`` single-threaded workers, started for the run
and stopped after it. Embedding runs on the workers (each loads the embedder once); the upserts
stay in the flow-run process, which holds the store, so an embedded Qdrant folder still has one
process at a time. Results match the thread runner's: same point ids, same counts.

Needs the ``dask`` extra: ``pip install 'flowkit-prefect[dask]'``.
"""

from __future__ import annotations

from typing import Any

from flowkit_prefect.exceptions import MissingDependencyError
from flowkit_prefect.flows.rag_ingest import rag_ingest
from flowkit_prefect.settings import get_settings


def dask_task_runner() -> Any:
    """A ``DaskTaskRunner`` for the configured cluster (see the module docstring)."""
    try:
        from prefect_dask.task_runners import DaskTaskRunner
    except ImportError as exc:
        raise MissingDependencyError("prefect-dask", "dask", "rag-ingest on Dask") from exc
    settings = get_settings()
    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": settings.dask_workers,
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": None,
        }
    )


rag_ingest_dask = rag_ingest.with_options(task_runner=dask_task_runner())

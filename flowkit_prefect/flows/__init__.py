"""Flow templates, deployed through the repository's ``prefect.yaml``."""

from flowkit_prefect.flows.plan_and_execute import plan_and_execute
from flowkit_prefect.flows.rag_answer import rag_answer
from flowkit_prefect.flows.rag_ingest import rag_ingest

__all__ = ["plan_and_execute", "rag_answer", "rag_ingest"]

"""Flow templates, deployed through the repository's ``prefect.yaml``."""

from flowkit_prefect.flows.rag_answer import rag_answer
from flowkit_prefect.flows.rag_ingest import rag_ingest

__all__ = ["rag_answer", "rag_ingest"]

"""Reranking search hits with any LangChain document compressor (cross-encoders and the like)."""

from __future__ import annotations

from langchain_core.documents import BaseDocumentCompressor, Document

from flowkit_prefect.exceptions import ConfigurationError
from flowkit_prefect.retrieval.types import SearchHit


def rerank(
    reranker: BaseDocumentCompressor, query: str, hits: list[SearchHit], top_k: int
) -> list[SearchHit]:
    """The ``top_k`` best of ``hits`` in the reranker's order. The compressor sees each hit as a
    ``Document`` (its text; the chunk id in metadata), and its ``relevance_score`` metadata,
    when it sets one, becomes the hit's score."""
    if not hits:
        return []
    by_id = {hit.chunk_id: hit for hit in hits}
    documents = [
        Document(page_content=hit.text, metadata={"chunk_id": hit.chunk_id, "source": hit.source})
        for hit in hits
    ]
    ranked: list[SearchHit] = []
    for document in reranker.compress_documents(documents, query):
        hit = by_id.get(str(document.metadata.get("chunk_id")))
        if hit is None:
            raise ConfigurationError(
                f"The reranker {type(reranker).__name__} returned a document without the "
                "chunk_id metadata it was given; a reranker must keep documents' metadata."
            )
        score = document.metadata.get("relevance_score")
        ranked.append(hit.model_copy(update={"score": float(score)}) if score is not None else hit)
    return ranked[:top_k]

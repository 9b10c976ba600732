"""The data that flows between retrieval tasks. Plain pydantic models: they serialize into
Prefect results and across processes unchanged."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class IngestRecord(BaseModel):
    """One document given inline instead of as a file."""

    id: str = Field(description="Stable id of the document; chunk ids derive from it.")
    text: str = Field(description="The document's text.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Stored with each chunk.")


class SourceDocument(BaseModel):
    """A loaded document: its stable source id, text and metadata."""

    source: str
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class SkippedSource(BaseModel):
    """An input that was not ingested, and why."""

    source: str
    reason: str


class LoadResult(BaseModel):
    """What loading found: the documents, the skipped inputs, and how many inputs there were."""

    documents: list[SourceDocument] = Field(default_factory=list)
    skipped: list[SkippedSource] = Field(default_factory=list)

    @property
    def found(self) -> int:
        """Every input seen: ``found == len(documents) + len(skipped)`` always holds."""
        return len(self.documents) + len(self.skipped)


class Chunk(BaseModel):
    """A piece of a document, with the deterministic id of its Qdrant point."""

    chunk_id: str
    source: str
    chunk_index: int
    text: str
    doc_hash: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    context: str = ""
    """Where the chunk sits: its document's title and heading path ("Guide > Herons > Food")."""

    @property
    def indexed_text(self) -> str:
        """What is embedded and indexed: the context line, then the chunk (the stored text is
        the chunk alone), so a passage that never names its subject is still found by it."""
        return f"{self.context}\n\n{self.text}" if self.context else self.text


SearchMode = Literal["hybrid", "dense", "sparse"]
"""hybrid: dense and BM25 results fused by reciprocal rank; dense: embeddings; sparse: BM25."""


class SearchHit(BaseModel):
    """One search result."""

    chunk_id: str
    source: str
    text: str
    score: float
    """The search's ranking score: cosine similarity (dense), BM25 (sparse) or fused rank."""
    chunk_index: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)
    similarity: float | None = None
    """Cosine similarity of the chunk to the query in every mode with a dense query (what
    relevance thresholds compare); None in sparse-only search."""
    context: str = ""
    """The chunk's title and heading path, as indexed with it."""


SourceStatus = Literal["ingested", "updated", "unchanged", "skipped", "deleted"]


class SourceReport(BaseModel):
    """One row of the ingest summary."""

    source: str
    status: SourceStatus
    chunks: int = 0
    reason: str = ""


class IngestSummary(BaseModel):
    """The result of an ingest: every input accounted for."""

    collection: str
    found: int
    ingested: int
    skipped: int
    chunks_written: int
    chunks_deleted: int
    sources: list[SourceReport]
    store_engine: str = ""
    """Which engine served the store (``QdrantStore.engine_name``)."""

    @property
    def accounted(self) -> bool:
        """``ingested + skipped == found``: no input silently disappeared."""
        return self.ingested + self.skipped == self.found


class Citation(BaseModel):
    """A chunk an answer relies on."""

    label: str
    chunk_id: str
    source: str
    excerpt: str


AnswerMode = Literal["generated", "extractive", "not_found"]


class FlaggedSource(BaseModel):
    """A retrieved chunk whose text looks like instructions to the model (prompt injection)."""

    chunk_id: str
    source: str
    reasons: list[str]
    dropped: bool = Field(default=False, description="Kept from the model (drop_flagged).")


class RagAnswer(BaseModel):
    """An answer with the chunks it cites, and how it was obtained.

    ``mode`` is ``generated`` when the chat model's answer is supported by the chunks it cites,
    ``extractive`` when it was not and the answer quotes the best-matching retrieved sentence
    instead, and ``not_found`` when the retrieved text does not hold an answer.
    """

    question: str
    answer: str
    answer_found: bool
    mode: AnswerMode = "generated"
    citations: list[Citation] = Field(default_factory=list)
    model: str = ""
    model_reply: str = Field(default="", description="The chat model's own answer, verbatim.")
    grounding: float = Field(default=0.0, description="Share of the answer's words in its sources.")
    retrieved: int = 0
    flagged: list[FlaggedSource] = Field(
        default_factory=list, description="Retrieved chunks that look like instructions."
    )

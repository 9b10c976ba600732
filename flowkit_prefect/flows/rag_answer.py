"""The ``rag-answer`` template: question → retrieve → answer with citations."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger
from pydantic import Field

from flowkit_prefect._blockref import resolve_block
from flowkit_prefect.blocks.chat_models import ChatModelBlock
from flowkit_prefect.blocks.embedders import EmbedderBlock
from flowkit_prefect.blocks.qdrant import QdrantStore
from flowkit_prefect.exceptions import ConfigurationError
from flowkit_prefect.flows._lineage import artifact_asset, collection_asset, materialize
from flowkit_prefect.flows._params import (
    DEFAULT_CHAT_MODEL,
    DEFAULT_COLLECTION,
    DEFAULT_EMBEDDER,
    DEFAULT_QDRANT_STORE,
    BlockRef,
    CollectionName,
)
from flowkit_prefect.llm import track_usage
from flowkit_prefect.retrieval.answer import answer_question
from flowkit_prefect.retrieval.tasks import search_chunks
from flowkit_prefect.retrieval.types import RagAnswer, SearchMode

ANSWER_ARTIFACT_KEY = "rag-answer"


def answer_markdown(result: RagAnswer) -> str:
    """The answer and its sources as markdown, for the artifact and the terminal."""
    mode_note = {
        "generated": "written by the model from the cited sources",
        "extractive": "the retrieved sentence closest to the question; the model's own reply "
        "was not supported by the sources it cited",
        "not_found": "the retrieved documents do not hold an answer",
    }[result.mode]
    lines = [
        f"### Question\n\n{result.question}\n",
        f"### Answer\n\n{result.answer}\n",
        f"_How: {mode_note}._\n",
    ]
    if result.mode == "extractive" and result.model_reply:
        reply = " ".join(result.model_reply.replace("`", "'").split())
        reply = reply[:300] + ("…" if len(reply) > 300 else "")
        lines.append(f"_Model reply (not used):_ `{reply}`\n")
    if result.citations:
        lines.append("### Sources\n")
        lines.extend(
            f"- **[{c.label}]** `{c.source}` (chunk `{c.chunk_id}`): {c.excerpt}"
            for c in result.citations
        )
    else:
        lines.append("_No source supports an answer._")
    if result.flagged:
        lines.append("\n### Flagged sources: text that looks like instructions to the model\n")
        lines.extend(
            f"- `{f.source}` (chunk `{f.chunk_id}`): {'; '.join(f.reasons).replace('`', chr(39))}"
            + (" (kept from the model)" if f.dropped else " (given to the model as data)")
            for f in result.flagged
        )
    lines.append(f"\n_Model: {result.model}; {result.retrieved} chunks retrieved._")
    return "\n".join(lines)


@flow(name="rag-answer", log_prints=True, persist_result=True)
def rag_answer(
    question: Annotated[str, Field(min_length=1)],
    collection: CollectionName = DEFAULT_COLLECTION,
    qdrant_store: BlockRef = DEFAULT_QDRANT_STORE,
    embedder: BlockRef = DEFAULT_EMBEDDER,
    chat_model: BlockRef = DEFAULT_CHAT_MODEL,
    top_k: Annotated[int, Field(ge=1, le=50)] = 4,
    filter: dict[str, Any] | None = None,
    min_score: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.2,
    grounding_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.6,
    drop_flagged_chunks: bool = False,
    search_mode: SearchMode | None = None,
) -> RagAnswer:
    """Answer a question from the chunks nearest to it, citing each chunk used.

    When nothing relevant is retrieved the answer says the documents do not contain it. The
    ``rag-answer`` artifact shows the answer, how it was obtained and its sources; the
    ``flowkit-llm-usage`` artifact the model call's tokens and cost.

    Args:
        question: The question to answer.
        collection: Qdrant collection to search.
        qdrant_store: Qdrant store block, as '<block-type-slug>/<name>'.
        embedder: Embedder block; must be the one the collection was built with.
        chat_model: Chat model block, as '<block-type-slug>/<name>'.
        top_k: How many chunks to retrieve.
        filter: Payload filter, e.g. {"source": "guide.md"} or {"metadata.lang": ["en", "de"]}.
        min_score: Chunks whose cosine similarity to the question is below this are not used.
        grounding_threshold: Share of the answer's words that must occur in the chunks it cites;
            below it, the retrieved sentence closest to the question is the answer instead.
        drop_flagged_chunks: Keep chunks that look like instructions to the model (override
            phrases, role markers, tool-call syntax, hidden Unicode) from it; either way they
            are named in the artifact.
        search_mode: hybrid (dense and BM25 fused), dense or sparse; empty: hybrid where the
            collection has sparse vectors.
    """
    if not question or not question.strip():
        raise ConfigurationError("rag-answer needs a non-empty question.")
    store = resolve_block(qdrant_store, QdrantStore)
    embedder_block = resolve_block(embedder, EmbedderBlock)
    model_block = resolve_block(chat_model, ChatModelBlock)
    embeddings = embedder_block.get_embeddings()
    hits = search_chunks(
        store, embeddings, collection, question, top_k=top_k, filter=filter, mode=search_mode
    )
    with track_usage():  # the flowkit-llm-usage table: tokens and cost of the answer
        result = answer_question(
            model_block,
            question,
            hits,
            embeddings,
            min_score=min_score,
            grounding_threshold=grounding_threshold,
            drop_flagged=drop_flagged_chunks,
        )
    create_markdown_artifact(
        answer_markdown(result),
        key=ANSWER_ARTIFACT_KEY,
        description=f"Answer to: {question[:80]}",
    )
    answers = artifact_asset(ANSWER_ARTIFACT_KEY, "Answers of rag-answer, with their sources.")
    metadata = {
        "collection": collection,
        "mode": result.mode,
        "retrieved": result.retrieved,
        "citations": len(result.citations),
        "model": result.model,
    }
    materialize(
        [answers], [collection_asset(store, collection)], {answers.key: metadata}, "record-answer"
    )
    get_run_logger().info("Answer: %s", result.answer)
    return result

"""Split documents into chunks with deterministic ids, using LangChain's recursive splitter."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import Counter

from langchain_text_splitters import RecursiveCharacterTextSplitter
from pydantic import BaseModel, Field, model_validator

from flowkit_prefect.retrieval.types import Chunk, SourceDocument

# Fixed namespace: the same (scope, source, text) gives the same point id on every machine.
CHUNK_ID_NAMESPACE = uuid.UUID("6c1f3e5a-8f0b-4f51-9a63-5b2f7f6b2d10")


class ChunkingOptions(BaseModel):
    """How documents are cut into chunks."""

    chunk_size: int = Field(default=800, ge=50, le=20_000, description="Characters per chunk.")
    chunk_overlap: int = Field(default=100, ge=0, description="Characters shared by neighbours.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingOptions:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size "
                f"({self.chunk_size})"
            )
        return self


def content_hash(text: str) -> str:
    """sha256 of the text, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_id(scope: str, source: str, text: str, occurrence: int = 0) -> str:
    """The Qdrant point id of a chunk: a UUIDv5 of its scope, source and content.

    ``occurrence`` tells apart identical passages within one document. An edit elsewhere in a
    document leaves the ids of its untouched chunks unchanged.
    """
    name = f"{scope}\x1f{source}\x1f{content_hash(text)}\x1f{occurrence}"
    return str(uuid.uuid5(CHUNK_ID_NAMESPACE, name))


_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_MARKDOWN = frozenset({"md", "markdown", "mdx"})


def _headings(document: SourceDocument) -> list[tuple[int, int, str]]:
    """(offset, level, text) of each markdown heading; none for other formats."""
    if str(document.metadata.get("file_type", "")).lower() not in _MARKDOWN:
        return []
    return [
        (m.start(), len(m.group(1)), m.group(2).strip()) for m in _HEADING.finditer(document.text)
    ]


def heading_path(
    document: SourceDocument, headings: list[tuple[int, int, str]], offset: int
) -> str:
    """The context line of the chunk starting at ``offset``: the document's title (its
    ``title`` metadata, else its first top-level heading), then the headings it sits under."""
    stack: list[tuple[int, str]] = []
    for position, level, text in headings:
        if position > offset:
            break
        stack = [(lv, name) for lv, name in stack if lv < level] + [(level, text)]
    title = str(document.metadata.get("title") or "")
    if not title and headings and headings[0][1] == 1:
        title = headings[0][2]
    parts = [title] if title else []
    parts += [name for _, name in stack if name != title]
    return " > ".join(parts)


def split_documents(
    documents: list[SourceDocument], options: ChunkingOptions, scope: str
) -> list[Chunk]:
    """Chunk every document; chunk ids are deterministic (see ``chunk_id``). Each chunk
    carries its title and heading path as ``context``."""
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=options.chunk_size, chunk_overlap=options.chunk_overlap, add_start_index=True
    )
    chunks: list[Chunk] = []
    for document in documents:
        doc_hash = content_hash(document.text)
        headings = _headings(document)
        seen: Counter[str] = Counter()
        pieces = splitter.create_documents([document.text])
        for index, piece in enumerate(pieces):
            text = piece.page_content
            occurrence = seen[text]
            seen[text] += 1
            offset = int(piece.metadata.get("start_index", 0))
            chunks.append(
                Chunk(
                    chunk_id=chunk_id(scope, document.source, text, occurrence),
                    source=document.source,
                    chunk_index=index,
                    text=text,
                    doc_hash=doc_hash,
                    metadata=document.metadata,
                    context=heading_path(document, headings, max(offset, 0)),
                )
            )
    return chunks

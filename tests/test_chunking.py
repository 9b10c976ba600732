"""Chunk ids are deterministic and move only with the content they name."""

import pytest
from pydantic import ValidationError

from flowkit_prefect import ChunkingOptions, SourceDocument
from flowkit_prefect.retrieval.chunking import chunk_id, split_documents

TEXT = " ".join(f"Sentence number {i} talks about herons and rivers." for i in range(60))


def test_ids_are_stable_across_runs_and_scoped() -> None:
    doc = SourceDocument(source="a.md", text=TEXT)
    options = ChunkingOptions(chunk_size=200, chunk_overlap=20)
    first = split_documents([doc], options, "scope")
    second = split_documents([doc], options, "scope")
    assert len(first) > 5
    assert [c.chunk_id for c in first] == [c.chunk_id for c in second]
    other_scope = split_documents([doc], options, "other")
    assert not {c.chunk_id for c in first} & {c.chunk_id for c in other_scope}
    assert len({c.chunk_id for c in first}) == len(first)


def test_an_edit_changes_only_the_edited_chunks() -> None:
    options = ChunkingOptions(chunk_size=200, chunk_overlap=0)
    before = split_documents([SourceDocument(source="a", text=TEXT)], options, "s")
    edited = TEXT.replace("Sentence number 59", "Sentence number fifty-nine")
    after = split_documents([SourceDocument(source="a", text=edited)], options, "s")
    unchanged = {c.chunk_id for c in before} & {c.chunk_id for c in after}
    assert len(unchanged) == len(before) - 1


def test_repeated_passages_get_distinct_ids() -> None:
    assert chunk_id("s", "a", "same", 0) != chunk_id("s", "a", "same", 1)
    doc = SourceDocument(source="a", text="repeat me please.\n\n" * 3)
    chunks = split_documents([doc], ChunkingOptions(chunk_size=50, chunk_overlap=0), "s")
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_overlap_must_be_below_size() -> None:
    with pytest.raises(ValidationError, match="chunk_overlap"):
        ChunkingOptions(chunk_size=100, chunk_overlap=100)

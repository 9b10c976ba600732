"""Loading: every format, and bad input skipped with a reason, never lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowkit_prefect import SourceNotFoundError
from flowkit_prefect.retrieval.loaders import load_folder, load_records


def _reasons(result) -> dict[str, str]:
    return {s.source: s.reason for s in result.skipped}


def test_every_supported_format_loads(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("plain text")
    (tmp_path / "b.md").write_text("# Title\n\nmarkdown body")
    (tmp_path / "c.html").write_text(
        "<html><head><title>Page</title><script>var secret=1;</script></head>"
        "<body><h1>Heading</h1><p>Visible &amp; kept.</p><style>p{}</style></body></html>"
    )
    (tmp_path / "d.json").write_text(json.dumps([{"id": "x1", "text": "json one", "lang": "en"}]))
    (tmp_path / "e.jsonl").write_text('{"id": "y1", "content": "line one"}\n\n{"body": "two"}\n')
    (tmp_path / "f.csv").write_text("name,city\nAda,Tartu\n")
    result = load_folder(tmp_path)
    docs = {d.source: d for d in result.documents}
    assert set(docs) == {
        "a.txt",
        "b.md",
        "c.html",
        "d.json#x1",
        "e.jsonl#y1",
        "e.jsonl#line-3",
        "f.csv#row-1",
    }
    assert docs["c.html"].text == "Heading\nVisible & kept."
    assert docs["c.html"].metadata["title"] == "Page"
    assert "secret" not in docs["c.html"].text
    assert docs["d.json#x1"].metadata["lang"] == "en"
    assert docs["f.csv#row-1"].text == "name: Ada\ncity: Tartu"
    assert result.skipped == []
    assert result.found == 7


def test_bad_inputs_are_skipped_with_reasons(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("fine")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.md").write_text("   \n\n")
    (tmp_path / "binary.txt").write_bytes(b"abc\x00\x01\x02")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "huge.txt").write_text("x" * 2000)
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "gone.txt").symlink_to(tmp_path / "missing-target.txt")
    (tmp_path / ".hidden.txt").write_text("not an input")
    result = load_folder(tmp_path, max_file_bytes=1000)
    reasons = _reasons(result)
    assert [d.source for d in result.documents] == ["good.txt"]
    assert reasons["empty.txt"] == "empty file"
    assert reasons["blank.md"] == "empty file"
    assert reasons["binary.txt"].startswith("binary file")
    assert "not valid UTF-8" in reasons["latin1.txt"] and "offset 3" in reasons["latin1.txt"]
    assert reasons["huge.txt"].startswith("too large: 2,000 bytes")
    assert "unsupported file type '.png'" in reasons["image.png"]
    assert reasons["broken.json"].startswith("invalid JSON")
    assert reasons["gone.txt"].startswith("unreadable")
    assert reasons[".hidden.txt"].startswith("hidden file")  # counted and reported, not read
    assert result.found == len(result.documents) + len(result.skipped) == 10


def test_records_without_text_or_with_duplicate_ids_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "r.jsonl").write_text(
        '{"id": "1", "text": "first"}\n{"id": "1", "text": "again"}\n'
        '{"id": "2"}\n[1, 2]\n{"id": "3", "text": ""}\nnot json\n'
    )
    result = load_folder(tmp_path)
    reasons = _reasons(result)
    assert [d.source for d in result.documents] == ["r.jsonl#1"]
    assert reasons["r.jsonl#2"].startswith("no text field")
    assert reasons["r.jsonl#line-4"] == "record is a list, not an object"
    assert reasons["r.jsonl#3"] == "empty text"
    assert reasons["r.jsonl#line-6"].startswith("invalid JSON line")
    assert any(s.reason.startswith("duplicate id") for s in result.skipped)
    assert result.found == 6


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        load_folder(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(SourceNotFoundError, match="is a file, not a folder"):
        load_folder(tmp_path / "file.txt")


def test_inline_records() -> None:
    result = load_records(
        [
            {"id": "a", "text": "alpha", "metadata": {"k": "v"}},
            {"id": "b", "text": " "},
            {"text": "no id"},
            {"id": "a", "text": "dup"},
        ]
    )
    assert [d.source for d in result.documents] == ["a"]
    assert result.documents[0].metadata == {"k": "v"}
    assert result.found == 4
    reasons = _reasons(result)
    assert reasons["b"] == "empty text"
    assert reasons["record#2"].startswith("invalid record")

"""Turn a folder of files, or inline records, into documents; every skipped input says why.

Supported: ``.txt``, ``.md``/``.markdown``, ``.html``/``.htm`` (text only), ``.json`` (one object
or a list of them), ``.jsonl`` (one object per line) and ``.csv`` (one document per row). Hidden
files and folders (names starting with a dot) are skipped and reported unless asked for; nothing
whose real path lies outside the folder is read.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from flowkit_prefect.exceptions import SourceNotFoundError
from flowkit_prefect.retrieval._walk import walk_folder
from flowkit_prefect.retrieval.types import (
    IngestRecord,
    LoadResult,
    SkippedSource,
    SourceDocument,
)

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
RECORD_SUFFIXES = {".json", ".jsonl", ".csv"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | RECORD_SUFFIXES
DEFAULT_TEXT_FIELDS = ("text", "content", "body")
DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024


class _HTMLText(HTMLParser):
    """Collect visible text and the title of an HTML page."""

    _SKIP = frozenset({"script", "style", "noscript", "template"})
    _BLOCK = frozenset(
        {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "pre"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag == "title":
            self._in_title = False
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skipping:
            self.parts.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.parts).splitlines())
        return "\n".join(line for line in lines if line)


def _decode(raw: bytes) -> str:
    if b"\x00" in raw[:8192]:
        raise ValueError("binary file (contains NUL bytes)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "re-save the file as UTF-8"
        ) from exc


def _record_text(record: dict[str, Any], text_fields: tuple[str, ...]) -> tuple[str, str | None]:
    for name in text_fields:
        value = record.get(name)
        if isinstance(value, str):
            return value, name
    return "", None


def _records_to_documents(
    source: str,
    records: Iterable[tuple[str, Any]],
    text_fields: tuple[str, ...],
    id_field: str | None,
    render_rows: bool,
) -> Iterator[SourceDocument | SkippedSource]:
    for position, record in records:
        if not isinstance(record, dict):
            yield SkippedSource(
                source=f"{source}#{position}",
                reason=f"record is a {type(record).__name__}, not an object",
            )
            continue
        record_id = record.get(id_field) if id_field else None
        doc_source = f"{source}#{record_id if record_id not in (None, '') else position}"
        text, used = _record_text(record, text_fields)
        if used is None and render_rows:
            text = "\n".join(f"{k}: {v}" for k, v in record.items() if v not in (None, ""))
        if used is None and not render_rows:
            yield SkippedSource(
                source=doc_source,
                reason=f"no text field (looked for {', '.join(text_fields)})",
            )
            continue
        if not text.strip():
            yield SkippedSource(source=doc_source, reason="empty text")
            continue
        metadata = {
            k: v
            for k, v in record.items()
            if k != used and isinstance(v, str | int | float | bool) and v != ""
        }
        yield SourceDocument(source=doc_source, text=text, metadata=metadata)


def _parse_file(
    path: Path,
    source: str,
    text: str,
    text_fields: tuple[str, ...],
    id_field: str | None,
) -> Iterator[SourceDocument | SkippedSource]:
    suffix = path.suffix.lower()
    base_meta = {"file_name": path.name, "file_type": suffix.lstrip(".")}
    if suffix in TEXT_SUFFIXES:
        yield SourceDocument(source=source, text=text, metadata=base_meta)
    elif suffix in HTML_SUFFIXES:
        parser = _HTMLText()
        parser.feed(text)
        parser.close()
        body = parser.text()
        if not body.strip():
            yield SkippedSource(source=source, reason="HTML page has no visible text")
            return
        meta = dict(base_meta, title=" ".join(parser.title.split())) if parser.title else base_meta
        yield SourceDocument(source=source, text=body, metadata=meta)
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            yield SkippedSource(source=source, reason=f"invalid JSON: {exc}")
            return
        items = data if isinstance(data, list) else [data]
        yield from _with_meta(
            _records_to_documents(
                source,
                ((str(i), item) for i, item in enumerate(items)),
                text_fields,
                id_field,
                False,
            ),
            base_meta,
        )
    elif suffix == ".jsonl":
        parsed: list[tuple[str, Any]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                parsed.append((f"line-{number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                yield SkippedSource(
                    source=f"{source}#line-{number}", reason=f"invalid JSON line: {exc}"
                )
        yield from _with_meta(
            _records_to_documents(source, parsed, text_fields, id_field, False), base_meta
        )
    elif suffix == ".csv":
        try:
            rows = list(csv.DictReader(io.StringIO(text)))
        except csv.Error as exc:
            yield SkippedSource(source=source, reason=f"malformed CSV: {exc}")
            return
        if not rows:
            yield SkippedSource(source=source, reason="CSV has a header but no rows")
            return
        yield from _with_meta(
            _records_to_documents(
                source,
                ((f"row-{n}", row) for n, row in enumerate(rows, start=1)),
                text_fields,
                id_field,
                True,
            ),
            base_meta,
        )


def _with_meta(
    items: Iterable[SourceDocument | SkippedSource], meta: dict[str, Any]
) -> Iterator[SourceDocument | SkippedSource]:
    for item in items:
        if isinstance(item, SourceDocument):
            item.metadata = {**meta, **item.metadata}
        yield item


def load_folder(
    folder: str | Path,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    text_fields: tuple[str, ...] = DEFAULT_TEXT_FIELDS,
    id_field: str | None = "id",
    include_hidden: bool = False,
) -> LoadResult:
    """Load every supported file under ``folder`` (recursively); skip the rest with a reason.

    Source ids are paths relative to ``folder`` (``guide/intro.md``), and ``file#record`` for the
    records of JSON, JSONL and CSV files. Every entry on disk is a document or a skipped source:
    hidden entries (unless ``include_hidden``), links leading outside the folder and anything
    that is not a regular file are reported, never read (see ``_walk``).
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise SourceNotFoundError(
            f"The documents folder {str(root)!r} does not exist (resolved from the working "
            f"directory {str(Path.cwd())!r}). Pass an existing folder, or use an absolute path."
        )
    if not root.is_dir():
        raise SourceNotFoundError(f"{str(root)!r} is a file, not a folder. Pass its folder.")
    result = LoadResult()
    for entry in walk_folder(root, include_hidden):
        if isinstance(entry, SkippedSource):
            result.skipped.append(entry)
            continue
        path, source = entry
        for item in _load_file(path, source, max_file_bytes, text_fields, id_field):
            if isinstance(item, SourceDocument):
                result.documents.append(item)
            else:
                result.skipped.append(item)
    return _drop_duplicates(result)


def _load_file(
    path: Path,
    source: str,
    max_file_bytes: int,
    text_fields: tuple[str, ...],
    id_field: str | None,
) -> Iterator[SourceDocument | SkippedSource]:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        yield SkippedSource(
            source=source,
            reason=f"unsupported file type {suffix or '(none)'!r}; "
            f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}",
        )
        return
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            yield SkippedSource(
                source=source,
                reason=f"too large: {size:,} bytes > max_file_bytes={max_file_bytes:,}",
            )
            return
        raw = path.read_bytes()
    except OSError as exc:
        yield SkippedSource(source=source, reason=f"unreadable: {exc.strerror or exc}")
        return
    if not raw.strip():
        yield SkippedSource(source=source, reason="empty file")
        return
    try:
        text = _decode(raw)
    except ValueError as exc:
        yield SkippedSource(source=source, reason=str(exc))
        return
    yield from _parse_file(path, source, text, text_fields, id_field)


def _drop_duplicates(result: LoadResult) -> LoadResult:
    """Keep the first document of each source id; later ones are skipped with a reason."""
    seen: set[str] = set()
    unique: list[SourceDocument] = []
    for document in result.documents:
        if document.source in seen:
            result.skipped.append(
                SkippedSource(source=document.source, reason="duplicate id: an earlier one has it")
            )
        else:
            seen.add(document.source)
            unique.append(document)
    result.documents = unique
    return result


def load_records(records: Iterable[IngestRecord | dict[str, Any]]) -> LoadResult:
    """Documents from inline records (``id``, ``text``, optional ``metadata``)."""
    result = LoadResult()
    for position, raw in enumerate(records):
        try:
            record = raw if isinstance(raw, IngestRecord) else IngestRecord.model_validate(raw)
        except Exception as exc:
            result.skipped.append(
                SkippedSource(source=f"record#{position}", reason=f"invalid record: {exc}")
            )
            continue
        if not record.text.strip():
            result.skipped.append(SkippedSource(source=record.id, reason="empty text"))
        else:
            result.documents.append(
                SourceDocument(source=record.id, text=record.text, metadata=record.metadata)
            )
    return _drop_duplicates(result)

"""Read a dataset file into a DataFrame, with errors that say what is wrong with the file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from flowkit_prefect.exceptions import DataReadError

SUPPORTED = (".csv", ".parquet", ".jsonl", ".ndjson", ".json")
_COMPRESSION = (".gz", ".bz2", ".zip", ".xz", ".zst")


def read_dataset(path: str | Path) -> pd.DataFrame:
    """Read ``.csv``, ``.parquet``, ``.jsonl``/``.ndjson`` (JSON lines) or ``.json`` (JSON lines
    or an array of records). CSV and JSON lines may be compressed (``.csv.gz``).

    Raises ``DataReadError`` for a missing, empty, malformed or unsupported file.
    """
    file = Path(path)
    kind = _kind(file)
    if not file.exists():
        raise DataReadError(
            f"No dataset at {file} (working directory {Path.cwd()}). Check the path."
        )
    if not file.is_file():
        raise DataReadError(f"{file} is a directory; pass the path of one dataset file.")
    if file.stat().st_size == 0:
        raise DataReadError(
            f"{file} is empty (0 bytes). Re-run the step that writes it, or skip this dataset."
        )
    try:
        if kind == ".csv":
            frame = _read_csv(file)
        elif kind == ".parquet":
            frame = _read_parquet(file)
        else:
            frame = _read_json(file, lines=kind in (".jsonl", ".ndjson"))
    except UnicodeDecodeError as exc:
        raise DataReadError(
            f"{file} is not UTF-8 text ({exc.reason} at byte {exc.start}). Re-save it as UTF-8."
        ) from exc
    if frame.columns.empty:
        raise DataReadError(f"{file} holds no columns. Check that it is the right file.")
    return frame


def _kind(file: Path) -> str:
    suffixes = [suffix.lower() for suffix in file.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    kind = suffixes[-1] if suffixes else ""
    if kind not in SUPPORTED or (kind == ".parquet" and file.suffix.lower() in _COMPRESSION):
        raise DataReadError(
            f"Unsupported file type {''.join(file.suffixes) or '(no extension)'!r} for {file}. "
            f"Supported: {', '.join(SUPPORTED)} (CSV and JSON lines may be gzip/bz2/zip/xz/zst "
            "compressed). Convert the file, or read it yourself and call validate_dataframe."
        )
    return kind


def _read_csv(file: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(file)
    except pd.errors.EmptyDataError as exc:
        raise DataReadError(
            f"{file} has no CSV header or rows (blank content). Re-run the step that writes it."
        ) from exc
    except pd.errors.ParserError as exc:
        raise DataReadError(
            f"{file} is not well-formed CSV: {str(exc).strip()}. Fix that line: quote fields "
            "that contain the delimiter, and give every row as many fields as the header."
        ) from exc


def _read_parquet(file: Path) -> pd.DataFrame:
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise DataReadError(
            f"Reading {file} needs pyarrow: `pip install pyarrow`, or convert it to CSV."
        ) from exc
    from pyarrow import ArrowException

    try:
        return pd.read_parquet(file)
    except (ArrowException, OSError, ValueError) as exc:
        raise DataReadError(
            f"{file} is not a readable Parquet file: {exc}. Re-write it, or check that it is "
            "Parquet and not another format with a .parquet name."
        ) from exc


def _read_json(file: Path, lines: bool) -> pd.DataFrame:
    if not lines and _first_char(file) != "[":
        lines = True  # a .json file that holds JSON lines
    try:
        frame = pd.read_json(file, lines=lines, orient="records")
    except (ValueError, TypeError) as exc:  # TypeError: a line that is not an object
        where = _first_bad_json_line(file) if lines else None
        detail = f"line {where[0]}: {where[1]}" if where else str(exc)
        shape = "one JSON object per line" if lines else "an array of JSON objects"
        raise DataReadError(
            f"{file} is not valid JSON ({detail}). It must hold {shape}; fix that line."
        ) from exc
    if frame.empty and frame.columns.empty:
        raise DataReadError(
            f"{file} holds no records. Re-run the step that writes it, or skip this dataset."
        )
    return frame


def _first_char(file: Path) -> str:
    if file.suffix.lower() in _COMPRESSION:
        return "{"  # compressed: treat .json.gz as JSON lines
    with file.open("r", encoding="utf-8") as handle:
        while chunk := handle.read(4096):
            stripped = chunk.lstrip()
            if stripped:
                return stripped[0]
    return ""


def _first_bad_json_line(file: Path) -> tuple[int, str] | None:
    """The first line that is not a JSON object (only read on the error path)."""
    if file.suffix.lower() in _COMPRESSION:
        return None
    with file.open("r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                return number, exc.msg
            if not isinstance(value, dict):
                return number, f"a JSON {type(value).__name__}, not an object"
    return None

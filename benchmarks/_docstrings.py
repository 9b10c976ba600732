"""The evaluation set of the retrieval benchmarks: real text no one here wrote.

The docstrings of the public callables of the installed numpy and pandas: each summary line is
a query, the rest of its docstring the document that answers it. Deterministic for the installed
package versions; a hash of the name puts each item in the tuning half or the test half.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

Half = Literal["test", "tuning"]

# A leading call signature, as the docstrings of ufuncs and numpy.random functions have.
_SIGNATURE = re.compile(r"^[A-Za-z_][\w.]*\(.*\)(\s*->.*)?$")


class Probe(NamedTuple):
    """What the store side needs of an item (flow parameters stay small: no document text)."""

    name: str
    query: str
    source: str


@dataclass(frozen=True)
class Item:
    """One query and its document (the file ``<name>.md``)."""

    name: str
    query: str
    body: str

    @property
    def source(self) -> str:
        """The file name, as ``load_documents`` names the document (relative to the folder)."""
        return f"{self.name}.md"

    @property
    def text(self) -> str:
        return f"# {self.name}\n\n{self.body}\n"

    @property
    def probe(self) -> Probe:
        return Probe(self.name, self.query, self.source)

    @property
    def half(self) -> Half:
        return "test" if hashlib.sha256(self.name.encode()).digest()[-1] % 2 == 0 else "tuning"


def _namespaces() -> Iterator[tuple[str, Any]]:
    """The public namespaces walked: (qualified prefix, object)."""
    import numpy
    import pandas
    import pandas.api.types
    import pandas.api.typing

    yield "numpy", numpy
    for sub in ("linalg", "fft", "random", "polynomial", "strings"):
        yield f"numpy.{sub}", importlib.import_module(f"numpy.{sub}")
    yield "numpy.ndarray", numpy.ndarray
    yield "pandas", pandas
    for name in ("DataFrame", "Series", "Index", "MultiIndex", "DatetimeIndex", "Categorical"):
        yield f"pandas.{name}", getattr(pandas, name)
    for name in ("Timestamp", "Timedelta"):
        yield f"pandas.{name}", getattr(pandas, name)
    yield "pandas.api.types", pandas.api.types
    for name in ("DataFrameGroupBy", "SeriesGroupBy", "Rolling", "Resampler"):
        if hasattr(pandas.api.typing, name):
            yield f"pandas.api.typing.{name}", getattr(pandas.api.typing, name)
    yield "pandas.Series.str", pandas.Series.str


def split_docstring(doc: str) -> tuple[str, str] | None:
    """(summary line, the rest) of a docstring, or None without a one-line summary."""
    paragraphs = [p.strip() for p in doc.strip().split("\n\n") if p.strip()]
    if len(paragraphs) > 1 and "\n" not in paragraphs[0] and _SIGNATURE.match(paragraphs[0]):
        paragraphs = paragraphs[1:]  # "add(x1, x2, /, out=None, ...)" before the summary
    if len(paragraphs) < 2 or "\n" in paragraphs[0] or len(paragraphs[0].split()) < 3:
        return None
    return paragraphs[0], "\n\n".join(paragraphs[1:])


def build_eval_set(limit: int, min_body: int) -> tuple[list[Item], Counter[str]]:
    """Up to ``limit`` items, deterministic for the installed package versions; and counts of
    what was left out and why."""
    found: dict[str, tuple[str, str]] = {}
    dropped: Counter[str] = Counter()
    for prefix, namespace in _namespaces():
        for attr in sorted(dir(namespace)):
            if attr.startswith("_"):
                continue
            try:
                value = getattr(namespace, attr)
            except Exception:
                dropped["unreadable attribute"] += 1
                continue
            if inspect.ismodule(value) or not callable(value):
                continue
            parts = split_docstring(inspect.getdoc(value) or "")
            if parts is None:
                dropped["no docstring with a one-line summary"] += 1
            elif len(parts[1]) < min_body:
                dropped[f"body under {min_body} characters"] += 1
            else:
                found[f"{prefix}.{attr}"] = parts
    bodies: set[str] = set()
    summaries: set[str] = set()
    unique: list[Item] = []
    for name in sorted(found):
        summary, body = found[name]
        if body in bodies:
            dropped["same body as an earlier name (alias)"] += 1
        elif summary in summaries:
            dropped["same summary as an earlier name"] += 1
        else:
            bodies.add(body)
            summaries.add(summary)
            unique.append(Item(name, summary, body))
    if len(unique) <= limit:
        return unique, dropped
    dropped["beyond --limit"] = len(unique) - limit
    step = len(unique) / limit
    return [unique[int(i * step)] for i in range(limit)], dropped


def write_corpus(items: Sequence[Item], folder: Path) -> None:
    folder.mkdir(parents=True)
    for item in items:
        (folder / item.source).write_text(item.text, encoding="utf-8")

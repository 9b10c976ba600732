"""Types built at run time for output schemas (``Literal`` of the labels a model may cite, lists
of them), so a structured-output schema admits exactly the values known only when a flow runs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal


def literal_of(values: Iterable[Any]) -> Any:
    """``Literal[v1, v2, ...]`` of ``values`` (at least one)."""
    options = tuple(values)
    if not options:
        raise ValueError("literal_of needs at least one value")
    return Literal[options]  # pyright: ignore[reportInvalidTypeForm]  (a value, built at run time)


def list_of(item: Any) -> Any:
    """``list[item]`` for an ``item`` type built at run time."""
    return list[item]  # pyright: ignore[reportInvalidTypeForm]  (a value, built at run time)

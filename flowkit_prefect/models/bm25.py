"""BM25 sparse vectors, offline: fastembed's ``Bm25`` (Snowball stemming, its tokenizer).

The vectors hold term frequencies only; Qdrant applies the inverse document frequency at query
time (the collection's sparse vector has the IDF modifier), so a collection's statistics stay
current as documents come and go. fastembed downloads the model's stop-word files unless it is
given a folder; none is needed here: with IDF, common words weigh almost nothing, and a stop
list would drop words technical queries need ("first", "all", "not").
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

SparseVector = tuple[list[int], list[float]]
"""Token indices and weights, the shape of Qdrant's ``SparseVector``."""


@cache
def _model() -> Any:
    from fastembed.sparse.bm25 import Bm25  # a core dependency, imported on first use

    folder = str(files("flowkit_prefect.models"))  # any folder: nothing is read from it
    return Bm25("Qdrant/bm25", specific_model_path=folder, stopwords=set())


def bm25_documents(texts: list[str]) -> list[SparseVector]:
    """The BM25 term-frequency vectors of passages (document side: length-normalised)."""
    if not texts:
        return []
    return [(e.indices.tolist(), e.values.tolist()) for e in _model().embed(texts, batch_size=256)]


def bm25_query(text: str) -> SparseVector:
    """The BM25 vector of a query: each distinct term once, weight 1."""
    [embedding] = list(_model().query_embed(text))
    return embedding.indices.tolist(), embedding.values.tolist()

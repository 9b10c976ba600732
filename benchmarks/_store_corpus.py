"""Real text and vectors for ``bench_store.py``: docstring chunks of installed packages, their
MiniLM embeddings (cached in a ``.npy`` file), larger sets made of perturbed copies, and the
exact (brute-force) nearest neighbours that recall is measured against.

The corpus is the docstrings of the public callables (and their classes' public methods) of
fixed namespaces of numpy, pandas, scipy, SQLAlchemy, pydantic, dask, pyarrow and Prefect,
cut into ~800-character chunks on paragraph boundaries. It is deterministic for the installed
package versions; the embedding cache is keyed by a hash of the exact texts embedded.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CHUNK_CHARS = 800
MIN_CHUNK_CHARS = 200
NAMESPACES: tuple[str, ...] = (
    "numpy",
    "numpy.linalg",
    "numpy.fft",
    "numpy.random",
    "numpy.polynomial",
    "numpy.ma",
    "numpy.strings",
    "pandas",
    "pandas.api.types",
    "scipy.stats",
    "scipy.linalg",
    "scipy.signal",
    "scipy.optimize",
    "scipy.sparse",
    "scipy.sparse.linalg",
    "scipy.special",
    "scipy.interpolate",
    "scipy.integrate",
    "scipy.spatial",
    "scipy.ndimage",
    "sqlalchemy",
    "sqlalchemy.orm",
    "pydantic",
    "dask.array",
    "dask.dataframe",
    "dask.bag",
    "pyarrow",
    "pyarrow.compute",
    "prefect",
)
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]`'\"])\.(\s|$)")
_NOT_PROSE = re.compile(
    r">>>|---|===|\.\. |https?:|^(References|Examples|Parameters|Returns|See)\b"
)


@dataclass(frozen=True)
class Passage:
    """One chunk of one docstring: the callable's qualified name, chunk index and text."""

    name: str
    index: int
    text: str


def _objects() -> Iterator[tuple[str, Any]]:
    """(qualified name, object) of every public callable of the namespaces, and of the public
    methods of their classes."""
    for module_name in NAMESPACES:
        try:
            module = importlib.import_module(module_name)
        except Exception:
            continue
        for attr in sorted(dir(module)):
            if attr.startswith("_"):
                continue
            try:
                value = getattr(module, attr)
            except Exception:
                continue
            if inspect.ismodule(value) or not callable(value):
                continue
            yield f"{module_name}.{attr}", value
            if inspect.isclass(value):
                for member in sorted(vars(value)):
                    if not member.startswith("_"):
                        method = vars(value)[member]
                        if callable(method) or isinstance(method, property):
                            yield f"{module_name}.{attr}.{member}", method


def _chunks(doc: str) -> list[str]:
    """A docstring packed into chunks of at most ``CHUNK_CHARS`` on paragraph boundaries
    (a longer paragraph is cut); chunks under ``MIN_CHUNK_CHARS`` are dropped."""
    pieces: list[str] = []
    for paragraph in (p.strip() for p in doc.split("\n\n")):
        while len(paragraph) > CHUNK_CHARS:
            pieces.append(paragraph[:CHUNK_CHARS])
            paragraph = paragraph[CHUNK_CHARS:]
        if paragraph:
            pieces.append(paragraph)
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 2 + len(piece) > CHUNK_CHARS:
            chunks.append(current)
            current = piece
        else:
            current = f"{current}\n\n{piece}" if current else piece
    if current:
        chunks.append(current)
    return [c for c in chunks if len(c) >= MIN_CHUNK_CHARS]


def build_corpus() -> list[Passage]:
    """Every docstring chunk, identical texts (aliases, inherited methods) kept once, in
    qualified-name order."""
    seen_docs: set[str] = set()
    seen_chunks: set[str] = set()
    passages: list[Passage] = []
    found: dict[str, str] = {}
    for name, value in _objects():
        doc = inspect.getdoc(value) or ""
        if "may vary" in doc:  # random output, drawn again at each import (scipy.stats)
            continue
        if len(doc) >= MIN_CHUNK_CHARS and name not in found:
            found[name] = doc
    for name in sorted(found):
        doc = found[name]
        if doc in seen_docs:
            continue
        seen_docs.add(doc)
        for index, text in enumerate(_chunks(doc)):
            if text not in seen_chunks:
                seen_chunks.add(text)
                passages.append(Passage(name, index, text))
    return passages


def first_sentence(text: str) -> str:
    """The text's first sentence, whitespace collapsed (up to 300 characters)."""
    flat = " ".join(text.split())
    match = _SENTENCE_END.search(flat)
    return (flat[: match.start() + 1] if match else flat)[:300]


def _is_prose(sentence: str) -> bool:
    """A plain sentence a user could ask: 5+ words, capitalised, mostly letters, no markup."""
    letters = sum(ch.isalpha() for ch in sentence)
    return (
        len(sentence.split()) >= 5
        and len(sentence) <= 200
        and sentence[:1].isupper()
        and letters >= 0.75 * len(sentence.replace(" ", ""))
        and not _NOT_PROSE.search(sentence)
    )


def _rank(passage: Passage) -> bytes:
    return hashlib.sha256(f"{passage.name}#{passage.index}".encode()).digest()


def split_queries(
    passages: Sequence[Passage], queries: int, indexed: int
) -> tuple[list[Passage], list[str]]:
    """(up to ``indexed`` passages to index, ``queries`` query texts): the queries are the
    first sentences of other passages (held out: never indexed), chosen by a hash of the name,
    so the split is the same on every machine for the same package versions."""
    order = sorted(passages, key=_rank)
    held: list[str] = []
    rest: list[Passage] = []
    for passage in order:
        sentence = first_sentence(passage.text)
        if len(held) < queries and _is_prose(sentence) and sentence not in held:
            held.append(sentence)
        else:
            rest.append(passage)
    return rest[:indexed], held  # in hash order: any prefix is a sample of the corpus


def cached_embeddings(
    texts: Sequence[str], cache_dir: Path, label: str, embed: Callable[[list[str]], Any]
) -> tuple[np.ndarray, bool]:
    """Unit float32 vectors of ``texts`` (``embed`` of them, or the ``.npy`` cache keyed by a
    hash of ``label`` and the texts); and whether they came from the cache."""
    digest = hashlib.sha256("\0".join([label, *texts]).encode()).hexdigest()[:16]
    path = cache_dir / f"{label}-{len(texts)}-{digest}.npy"
    if path.exists():
        return np.load(path), True
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # batches of like lengths
    vectors = np.empty((len(texts), 0), dtype=np.float32)
    if texts:
        embedded = np.asarray(embed([texts[i] for i in order]), dtype=np.float32)
        vectors = np.empty_like(embedded)
        vectors[order] = embedded
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors, False


def perturbed_set(
    real: np.ndarray, n: int, sigma: float, seed: int = 14
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors: the real ones first, then copies of real vectors (taken in turn)
    plus Gaussian noise of ``sigma`` per dimension, renormalised; and each one's real index."""
    base = np.arange(n) % len(real)
    vectors = real[base].copy()
    extra = n - min(n, len(real))
    if extra:
        rng = np.random.default_rng(seed)
        noise = rng.normal(0.0, sigma, size=(extra, real.shape[1])).astype(np.float32)
        vectors[len(real) :] += noise
        vectors[len(real) :] /= np.linalg.norm(vectors[len(real) :], axis=1, keepdims=True)
    return vectors, base


def nearest_cosines(vectors: np.ndarray, sample: int = 500) -> np.ndarray:
    """Cosine of each of the first ``sample`` vectors to its nearest other vector."""
    head = vectors[:sample]
    scores = head @ vectors.T
    scores[np.arange(len(head)), np.arange(len(head))] = -np.inf
    return scores.max(axis=1)


def exact_top(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    groups: np.ndarray | None = None,
    modulus: int = 1,
) -> list[list[int]]:
    """Exact top-``k`` row numbers per query by brute-force cosine (unit vectors); with
    ``groups``, query ``q`` only among rows whose group is ``q % modulus``."""
    tops: list[list[int]] = []
    for q, vector in enumerate(queries):
        scores = vectors @ vector
        if groups is not None:
            scores = np.where(groups == q % modulus, scores, -np.inf)
        best = np.argpartition(-scores, k)[:k]
        tops.append(best[np.argsort(-scores[best])].tolist())
    return tops


def recall(found: Sequence[Sequence[int]], exact: Sequence[Sequence[int]], k: int) -> float:
    """Mean share of the exact top-``k`` among the hits."""
    return float(np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact, strict=True)]))

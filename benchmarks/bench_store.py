"""Benchmark the store engines side by side: qdrant-edge in this process (``engine="edge"``)
against qdrant-client's pure-Python local mode (``engine="local"``), on a folder each.

What: for each size N (``--sizes``), each engine gets a fresh folder through
``QdrantStore(location=..., engine=...)`` and is measured through the package's store
operations (``flowkit_prefect.retrieval.store``), no Prefect:

* **upsert**: ``upsert_chunks`` in batches of 256 (BM25 sparse vectors computed inside, as in
  an ingest), as points/s; against a baseline that computes the same BM25 vectors of the same
  batches and writes nothing, so the ratio shows the store's own cost;
* **optimizer** (edge): ``EdgeQdrant.optimize()`` after the writes (HNSW build), then ``close``;
* **open**: ``get_client()`` and a first ``count`` on the closed folder;
* **queries**, warm (the store open, one untimed exact search that reads every vector into memory
  and a few untimed searches first), 200 each through
  ``store.search`` with top_k=10: dense, dense filtered on one of 50 sources, and hybrid
  (dense + BM25 fused); p50 and p95;
* **recall@10** of each engine's dense (and filtered) hits against exact top-10 by numpy
  brute-force cosine over the same vectors (local mode is exact: its recall checks the harness).

Data: docstring chunks of installed packages (``_store_corpus.py``), ``--real`` of them
embedded with MiniLM (cached in a ``.npy`` file under ``--cache-dir``); above that, points are
perturbed copies of the real vectors (Gaussian noise, renormalised) with their text, as printed.
Queries are MiniLM embeddings of the first sentences of held-out chunks (never indexed).

Local mode is skipped above ``--local-max`` points (its upsert takes ~86 s per 100k points).

Run from the repository root: ``.venv/bin/python benchmarks/bench_store.py [--quick]``.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from _common import report, run_main
from _store_corpus import (
    build_corpus,
    cached_embeddings,
    exact_top,
    nearest_cosines,
    perturbed_set,
    recall,
    split_queries,
)
from qdrant_client import models

from flowkit_prefect import LocalEmbedder, QdrantStore
from flowkit_prefect.blocks.edge_engine import EdgeQdrant
from flowkit_prefect.models.bm25 import bm25_documents, bm25_query
from flowkit_prefect.retrieval.store import DENSE_VECTOR, ensure_collection, search, upsert_chunks
from flowkit_prefect.retrieval.types import Chunk

COLLECTION = "bench-store"
SCOPE = "bench-store"
BATCH = 256
SOURCES = 50
TOP_K = 10
WARM_UP = 5
Engine = Literal["edge", "local"]
ENGINES: tuple[Engine, ...] = ("edge", "local")
DEFAULT_SIZES = "10000,50000,200000"
QUICK_SIZES = "2000,10000"
SKIPPED = "skipped (too slow: see issue 14)"
_ID_SPACE = uuid.UUID("5c0d6b1e-0000-4000-8000-000000000014")


@dataclass
class Data:
    """Everything measured against: the points' chunks and vectors, and the queries."""

    chunks: list[Chunk]
    vectors: np.ndarray
    sources: np.ndarray  # each point's source number
    queries: list[str]
    query_vectors: np.ndarray
    query_sparse: list[tuple[list[int], list[float]]]


@dataclass
class EngineRun:
    """One engine at one size: what it took, or why it was skipped."""

    engine: str
    n: int
    skipped: str = ""
    upsert_s: float = 0.0
    optimize_s: float | None = None
    close_s: float = 0.0
    open_s: float = 0.0
    first_exact_s: float = 0.0  # the warm-up: an exact search over every vector, untimed below
    indexed: int | None = None  # get_collection().indexed_vectors_count after reopening
    ms: dict[str, list[float]] = field(default_factory=dict)  # query kind -> latencies
    recall: dict[str, float] = field(default_factory=dict)  # dense / filtered -> recall@10

    @property
    def throughput(self) -> float:
        return self.n / self.upsert_s if self.upsert_s else 0.0

    def pct(self, kind: str, q: float) -> float:
        """The ``q`` percentile of one kind of query, in milliseconds."""
        return float(np.percentile(self.ms[kind], q)) if self.ms.get(kind) else float("nan")


# --------------------------------------------------------------------------- data


def chunk_of(i: int, text: str, name: str) -> Chunk:
    """Point ``i``: a deterministic id, one of ``SOURCES`` sources in turn."""
    return Chunk(
        chunk_id=str(uuid.uuid5(_ID_SPACE, str(i))),
        source=f"source-{i % SOURCES:02d}.md",
        chunk_index=i,
        text=text,
        doc_hash=f"h{i}",
        context=name,
    )


def build_data(args: argparse.Namespace, largest: int) -> Data:
    """The corpus, its real embeddings (cached) and the ``largest`` points; printed plainly."""
    started = time.perf_counter()
    passages = build_corpus()
    indexed, queries = split_queries(passages, args.queries, args.real)  # cached at any N
    real = len(indexed)
    print(
        f"Corpus: {len(passages)} docstring chunks (~800 characters) of installed packages, "
        f"built in {time.perf_counter() - started:.1f} s; {real} with real embeddings, "
        f"{len(queries)} held-out first sentences as queries"
    )
    embeddings = LocalEmbedder().get_embeddings()
    real_chunks = [chunk_of(i, p.text, p.name) for i, p in enumerate(indexed)]
    started = time.perf_counter()
    real_vectors, hit = cached_embeddings(
        [c.indexed_text for c in real_chunks], args.cache_dir, "minilm", embeddings.embed_documents
    )
    query_vectors, _ = cached_embeddings(
        queries, args.cache_dir, "minilm-queries", embeddings.embed_documents
    )
    how = "from the cache" if hit else "embedded with MiniLM"
    print(f"Real vectors: {real} {how} in {time.perf_counter() - started:.1f} s ({args.cache_dir})")
    vectors, base = perturbed_set(real_vectors, largest, args.sigma)
    chunks = real_chunks + [
        chunk_of(i, indexed[b].text, indexed[b].name)
        for i, b in enumerate(base[real:].tolist(), start=real)
    ]
    if largest > real:
        copy_cos = np.einsum("ij,ij->i", vectors[real:], real_vectors[base[real:]])
        print(
            f"Vectors: {largest - real} of {largest} points (N-{real} at each size N) are "
            f"perturbed copies of real MiniLM vectors (Gaussian noise sigma={args.sigma} per "
            f"dimension, renormalised; median cosine to their original "
            f"{np.median(copy_cos):.3f}), with their original's text. Real set's median "
            f"nearest-neighbour cosine: {np.median(nearest_cosines(real_vectors)):.3f}"
        )
    return Data(
        chunks=chunks,
        vectors=vectors,
        sources=np.arange(largest) % SOURCES,
        queries=queries,
        query_vectors=query_vectors,
        query_sparse=[bm25_query(q) for q in queries],
    )


# --------------------------------------------------------------------------- measuring


def bm25_only(data: Data, n: int) -> float:
    """Seconds to compute the BM25 vectors of the first ``n`` chunks in upsert batches."""
    started = time.perf_counter()
    for first in range(0, n, BATCH):
        bm25_documents([c.indexed_text for c in data.chunks[first : first + BATCH]])
    return time.perf_counter() - started


def timed_queries(
    client: Any, data: Data, kind: str, ids: dict[str, int]
) -> tuple[list[float], list[list[int]]]:
    """Every query of one kind through ``store.search``: (milliseconds, hit point numbers)."""
    ms: list[float] = []
    found: list[list[int]] = []
    vectors = data.query_vectors.tolist()
    for q, vector in [*enumerate(vectors[:WARM_UP]), *enumerate(vectors)]:
        sparse = data.query_sparse[q] if kind == "hybrid" else None
        conditions = {"source": f"source-{q % SOURCES:02d}.md"} if kind == "filtered" else None
        started = time.perf_counter()
        hits = search(client, COLLECTION, vector, sparse=sparse, top_k=TOP_K, conditions=conditions)
        ms.append((time.perf_counter() - started) * 1000)
        found.append([ids[h.chunk_id] for h in hits])
    return ms[WARM_UP:], found[WARM_UP:]  # the first few: warm-up


def run_engine(engine: Engine, n: int, data: Data, workdir: Path) -> EngineRun:
    """Write ``n`` points into a fresh folder, optimize, close, reopen, query."""
    run = EngineRun(engine, n)
    folder = workdir / f"{engine}-{n}"
    store = QdrantStore(location=str(folder), engine=engine)
    client = store.get_client()
    try:
        ensure_collection(
            client, COLLECTION, data.vectors.shape[1], payload_indexes=store.index_fields()
        )
        for first in range(0, n, BATCH):
            last = min(first + BATCH, n)
            vectors = data.vectors[first:last].tolist()  # as an embedder returns them: untimed
            started = time.perf_counter()
            upsert_chunks(client, COLLECTION, data.chunks[first:last], vectors, SCOPE)
            run.upsert_s += time.perf_counter() - started
        if isinstance(client, EdgeQdrant):
            started = time.perf_counter()
            client.optimize()
            run.optimize_s = time.perf_counter() - started
    finally:
        started = time.perf_counter()
        client.close()
        run.close_s = time.perf_counter() - started
    started = time.perf_counter()
    client = store.get_client()
    stored = client.count(COLLECTION, exact=True).count
    run.open_s = time.perf_counter() - started
    try:
        if stored != n:
            raise RuntimeError(f"{engine}: {stored} points stored of {n}")
        ids = {c.chunk_id: i for i, c in enumerate(data.chunks[:n])}
        run.indexed = client.get_collection(COLLECTION).indexed_vectors_count
        started = time.perf_counter()  # warm: one exact search reads every vector into memory
        client.query_points(
            COLLECTION,
            query=data.query_vectors[0].tolist(),
            using=DENSE_VECTOR,
            search_params=models.SearchParams(exact=True),
            limit=TOP_K,
        )
        run.first_exact_s = time.perf_counter() - started
        for kind in ("dense", "filtered", "hybrid"):
            run.ms[kind], found = timed_queries(client, data, kind, ids)
            if kind != "hybrid":
                groups = data.sources[:n] if kind == "filtered" else None
                exact = exact_top(data.vectors[:n], data.query_vectors, TOP_K, groups, SOURCES)
                run.recall[kind] = recall(found, exact, TOP_K)
    finally:
        client.close()
    shutil.rmtree(folder, ignore_errors=True)
    return run


# --------------------------------------------------------------------------- printing


def print_table(runs: Sequence[EngineRun], bm25: dict[int, float]) -> None:
    """One row per size and engine."""
    header = (
        f"{'N':>7} {'engine':<6}{'upsert pts/s':>13}{'/BM25':>7}{'optim s':>8}{'open s':>8}"
        f"{'dense p50/p95 ms':>18}{'filter p50/p95':>16}{'hybrid p50/p95':>16}"
        f"{'recall@10':>10}{'filt rec':>9}"
    )
    print("\n" + header)
    print("-" * len(header))
    for run in runs:
        line = f"{run.n:>7} {run.engine:<6}"
        if run.skipped:
            print(f"{line}  {run.skipped}")
            continue
        ratio = run.throughput / (run.n / bm25[run.n])
        optim = "-" if run.optimize_s is None else f"{run.optimize_s:.2f}"
        line += f"{run.throughput:>13,.0f}{ratio:>7.2f}{optim:>8}{run.open_s:>8.2f}"
        for kind, width in (("dense", 18), ("filtered", 16), ("hybrid", 16)):
            line += f"{f'{run.pct(kind, 50):.2f}/{run.pct(kind, 95):.2f}':>{width}}"
        line += f"{run.recall['dense']:>10.3f}{run.recall['filtered']:>9.3f}"
        print(line)
    print(
        "BM25-only baseline (points/s, no store): "
        + ", ".join(f"N={n}: {n / s:,.0f}" for n, s in bm25.items())
        + ". /BM25 = upsert throughput / that (1.0: the store costs nothing)."
    )


def report_figures(runs: Sequence[EngineRun], bm25: dict[int, float]) -> list[dict[str, Any]]:
    """The headline records per size: edge against local mode, and against BM25 alone."""
    records: list[dict[str, Any]] = []
    by = {(r.engine, r.n): r for r in runs}
    for n, seconds in bm25.items():
        edge, local = by[("edge", n)], by[("local", n)]
        ok = not local.skipped
        skip = "" if ok else f"local mode {SKIPPED}"
        lt, lo = (local.throughput, local.open_s) if ok else (None, None)
        tp = "points/s"
        rows: list[tuple[str, float | None, float | None, str, str]] = [
            ("edge / local upsert_chunks throughput", edge.throughput, lt, tp, skip),
            ("edge upsert_chunks / BM25 alone throughput", edge.throughput, n / seconds, tp, ""),
            ("edge / local open (get_client + count)", edge.open_s, lo, "s", skip),
        ]
        for kind in ("dense", "filtered", "hybrid"):
            p95 = f"p95 edge {edge.pct(kind, 95):.2f} ms"
            p95 += f", local {local.pct(kind, 95):.2f} ms" if ok else f"; {skip}"
            theirs = local.pct(kind, 50) / 1000 if ok else None
            rows.append(
                (f"edge / local {kind} search p50", edge.pct(kind, 50) / 1000, theirs, "s", p95)
            )
        rows.append(("edge optimizer (HNSW build) after upsert", edge.optimize_s, None, "s", ""))
        note = f"filtered recall@10 {edge.recall['filtered']:.3f}"
        rows.append(("edge dense recall@10 / exact", edge.recall["dense"], 1.0, "", note))
        for label, ours, theirs, unit, note in rows:
            records.append(report(f"store N={n}: {label}", ours, theirs, unit=unit, note=note))
    return records


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"points (default {DEFAULT_SIZES})")
    parser.add_argument("--quick", action="store_true", help=f"--sizes {QUICK_SIZES}")
    parser.add_argument(
        "--local-max",
        type=int,
        default=50000,
        help="skip local mode above this many points (default 50000)",
    )
    parser.add_argument(
        "--real",
        type=int,
        default=5000,
        help="chunks embedded with MiniLM (default 5000); the rest are copies",
    )
    parser.add_argument("--queries", type=int, default=200, help="queries per kind (200)")
    parser.add_argument(
        "--sigma",
        type=float,
        default=0.02,
        help="noise per dimension of the perturbed copies (default 0.02)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "flowkit-bench-store-cache",
        help="where the embeddings are cached ($TMPDIR/flowkit-bench-store-cache)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = QUICK_SIZES
    args.size_list = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if not args.size_list or min(args.size_list) <= TOP_K:
        parser.error(f"--sizes must be sizes above {TOP_K}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wall = time.perf_counter()
    data = build_data(args, max(args.size_list))
    bm25_documents(["warm up"])  # the model, once, untimed
    runs: list[EngineRun] = []
    bm25: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="flowkit-bench-store-") as tmp:
        for n in args.size_list:
            bm25[n] = bm25_only(data, n)
            for engine in ENGINES:
                if engine == "local" and n > args.local_max:
                    runs.append(EngineRun(engine, n, skipped=SKIPPED))
                    print(f"N={n} {engine}: {SKIPPED}")
                    continue
                run = run_engine(engine, n, data, Path(tmp))
                runs.append(run)
                print(
                    f"N={n} {engine}: upsert {run.upsert_s:.1f} s, open {run.open_s:.2f} s, "
                    f"close {run.close_s:.2f} s, indexed_vectors_count {run.indexed}, "
                    f"first exact search {run.first_exact_s:.2f} s, "
                    f"dense p50 {run.pct('dense', 50):.2f} ms",
                    flush=True,
                )
    print_table(runs, bm25)
    records = report_figures(runs, bm25)
    print(f"\nWall time: {time.perf_counter() - wall:.1f} s")
    print(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    run_main(main)

"""Benchmark retrieval quality and speed: ``search_chunks`` (dense, sparse, hybrid) against a
naive loop, on an evaluation set of real text that no one here wrote.

What: the evaluation set comes from the docstrings of the public callables of the installed
``numpy`` and ``pandas`` (``numpy.*``, ``numpy.linalg.*``, ``pandas.DataFrame.*``,
``pandas.Series.str.*``...). Each docstring with a one-line summary and a body of at least
``--min-body`` characters gives one query (the summary line) and one document (the rest of the
docstring, without the summary), written as ``<qualified name>.md`` under a ``# <qualified name>``
heading. Identical bodies (aliases) and identical summaries (a query with two right answers) are
kept once, by the first name in sorted order; then up to ``--limit`` documents are taken evenly
spaced from the sorted names, so that both packages are in. A hash of the name (sha256 parity)
puts each query in the tuning half or the test half, the same on every machine for the same
package versions. Every query is searched against the whole corpus; its rank is the position of
its own document once the hits are deduplicated by document (in rank order).

* **store**: the corpus is ingested into an embedded Qdrant folder through the package's public
  tasks (``load_documents``, ``chunk_documents``, ``prepare_upserts``, ``embed_and_upsert``) in
  a Prefect flow run, then every query goes through ``search_chunks`` in the same flow run, once
  per mode (``dense``, ``sparse``, ``hybrid``) when ``search_chunks`` takes a ``mode``; otherwise
  the default (dense) search only, and sparse and hybrid are printed as not available;
* **naive loop**: each document cut into 1,000-character windows (plain slicing, no overlap),
  embedded with the same embedder, brute-force cosine with numpy, documents ranked by their best
  window. No Prefect, no store.

Printed per half (the test half is the one reported): hit@1, hit@5, MRR@10 and ms/query (median
of the warm searches: store open, model loaded, each through the ``search_chunks`` task as a user
calls it), and ``embed_query`` alone, so that the search's cost beyond the query embedding shows.

Why: the targets on the test half are hybrid better than dense alone and than sparse alone on
hit@1 and MRR@10, and hybrid hit@5 at least the naive loop's. The tuning half is for choosing
settings (``--sweep``: chunk sizes and overlaps, measured on the tuning half only, with its own
documents as the corpus), so the test figures are not tuned on.

Exit status: 0 when it ran (a missed target is a measurement), 1 on an error or an evaluation
set smaller than 200 queries at the default size.

Run from the repository root: ``.venv/bin/python benchmarks/bench_retrieval.py`` (``make bench``).
"""

from __future__ import annotations

import os

# Everything is offline: never let huggingface_hub try the network. Prefect's console logs are
# lowered to warnings so the report stays readable (the run loggers still send every record to
# the API, as in a real run); set these variables yourself to see them.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import argparse
import inspect
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _common import prefect_backend, report, run_main
from _docstrings import Item, Probe, build_eval_set, write_corpus
from langchain_core.embeddings import Embeddings
from prefect import flow
from prefect.runtime import flow_run as current_flow_run

from flowkit_prefect import (
    LocalEmbedder,
    QdrantStore,
    chunk_documents,
    embed_and_upsert,
    load_documents,
    prepare_upserts,
    search_chunks,
)
from flowkit_prefect.retrieval.chunking import ChunkingOptions

MODES = ("dense", "sparse", "hybrid")
COLLECTION = "bench-retrieval"
NAIVE = "naive"
NAIVE_WINDOW = 1000  # characters per window of the naive loop
MRR_DEPTH = 10
MIN_QUERIES = 200  # at the default size
WARM_UP_QUERIES = 3  # per mode, before the timed searches
UPSERT_BATCH = 256  # chunks per embed_and_upsert call, as rag-ingest batches
DEFAULT_SWEEP = "400/50,600/75,800/100,1000/100,1200/150"


# --------------------------------------------------------------------------- scoring


@dataclass
class Run:
    """One way of searching: each query's rank of its own document, and the search times."""

    ranks: dict[str, int | None] = field(default_factory=dict)  # name -> 1-based, None: missed
    seconds: dict[str, float] = field(default_factory=dict)  # name -> one warm search
    distinct: dict[str, int] = field(default_factory=dict)  # name -> documents in the hits


@dataclass(frozen=True)
class Metrics:
    queries: int
    hit1: float
    hit5: float
    mrr10: float
    ms_median: float
    ms_mean: float


def rank_of(sources: Sequence[str], target: str) -> tuple[int | None, int]:
    """The 1-based rank of ``target`` among the distinct sources in hit order (None if absent),
    and the number of distinct sources."""
    distinct = list(dict.fromkeys(sources))
    rank = distinct.index(target) + 1 if target in distinct else None
    return rank, len(distinct)


def metrics(run: Run, names: Sequence[str]) -> Metrics:
    ranks = [run.ranks[name] for name in names]
    ms = [run.seconds[name] * 1000 for name in names]
    n = len(ranks) or 1
    return Metrics(
        queries=len(ranks),
        hit1=sum(1 for r in ranks if r == 1) / n,
        hit5=sum(1 for r in ranks if r is not None and r <= 5) / n,
        mrr10=sum(1 / r for r in ranks if r is not None and r <= MRR_DEPTH) / n,
        ms_median=statistics.median(ms) if ms else 0.0,
        ms_mean=statistics.fmean(ms) if ms else 0.0,
    )


# --------------------------------------------------------------------------- the store side


def modes_supported() -> bool:
    """Whether ``search_chunks`` takes a ``mode`` (dense / sparse / hybrid)."""
    return "mode" in inspect.signature(search_chunks.fn).parameters


@dataclass
class StoreResult:
    chunks: int
    ingest_seconds: float
    runs: dict[str, Run]  # mode -> run
    flow_run_id: str = ""
    task_runs: int = 0  # task calls made in the flow run


def task_calls(chunks: int, queries: int, modes: int) -> int:
    """Task runs of one ingest (load, chunk, prepare, the upsert batches) and its searches."""
    return 3 + -(-chunks // UPSERT_BATCH) + modes * (min(WARM_UP_QUERIES, queries) + queries)


def ingest(
    store: QdrantStore,
    embeddings: Embeddings,
    folder: str,
    collection: str,
    options: ChunkingOptions | None,
    dimension: int,
) -> tuple[int, float]:
    """The corpus into ``collection`` through the public tasks; (chunks, seconds)."""
    started = time.perf_counter()
    loaded = load_documents(folder=folder)
    if loaded.skipped:
        raise RuntimeError(f"load_documents skipped {len(loaded.skipped)}: {loaded.skipped[:3]}")
    chunks = chunk_documents(loaded.documents, options=options, scope=folder)
    plan = prepare_upserts(store, collection, chunks, dimension=dimension, scope=folder)
    written = 0
    for first in range(0, len(plan.to_write), UPSERT_BATCH):
        batch = plan.to_write[first : first + UPSERT_BATCH]
        written += embed_and_upsert(store, embeddings, collection, batch, scope=folder)
    if written != len(chunks):
        raise RuntimeError(f"wrote {written} of {len(chunks)} chunks into {collection!r}")
    return len(chunks), time.perf_counter() - started


def search_all(
    store: QdrantStore,
    embeddings: Embeddings,
    collection: str,
    queries: Sequence[Probe],
    modes: Sequence[str | None],
    top_k: int,
    warm_up: bool = True,
) -> dict[str, Run]:
    """Every query through ``search_chunks``, once per mode (None: the default, no ``mode``
    argument), warm: the store is held open around the searches and a few untimed searches go
    first."""
    runs: dict[str, Run] = {}
    with store.session():  # opened once, as a flow that searches many times holds it
        for mode in modes:
            extra: dict[str, Any] = {} if mode is None else {"mode": mode}
            run = Run()
            for item in queries[:WARM_UP_QUERIES] if warm_up else ():
                search_chunks(store, embeddings, collection, item.query, top_k=top_k, **extra)
            for item in queries:
                started = time.perf_counter()
                hits = search_chunks(
                    store, embeddings, collection, item.query, top_k=top_k, **extra
                )
                run.seconds[item.name] = time.perf_counter() - started
                rank, distinct = rank_of([hit.source for hit in hits], item.source)
                run.ranks[item.name] = rank
                run.distinct[item.name] = distinct
            runs[mode or "dense"] = run
    return runs


@flow(name="bench-retrieval", persist_result=False, validate_parameters=False)
def store_side(
    folder: str,
    location: str,
    queries: list[Probe],
    modes: list[str | None],
    top_k: int,
    options: ChunkingOptions | None,
) -> StoreResult:
    """Ingest the corpus, then search every query in every mode, in one flow run."""
    store = QdrantStore(location=location)
    embeddings = LocalEmbedder().get_embeddings()
    chunks, seconds = ingest(
        store, embeddings, folder, COLLECTION, options, LocalEmbedder().dimension()
    )
    runs = search_all(store, embeddings, COLLECTION, queries, modes, top_k)
    calls = task_calls(chunks, len(queries), len(modes))
    return StoreResult(chunks, seconds, runs, str(current_flow_run.id), calls)


@dataclass(frozen=True)
class SweepRow:
    chunk_size: int
    chunk_overlap: int
    chunks: int
    ingest_seconds: float
    runs: dict[str, Run]


@dataclass
class SweepResult:
    rows: list[SweepRow]
    flow_run_id: str
    task_runs: int


@flow(name="bench-retrieval-sweep", persist_result=False, validate_parameters=False)
def sweep_side(
    folder: str,
    location: str,
    queries: list[Probe],
    modes: list[str | None],
    top_k: int,
    settings: list[tuple[int, int]],
) -> SweepResult:
    """Each chunking setting into a collection of its own; every query searched in each."""
    store = QdrantStore(location=location)
    embeddings = LocalEmbedder().get_embeddings()
    rows: list[SweepRow] = []
    calls = 0
    for size, overlap in settings:
        collection = f"sweep-{size}-{overlap}"
        options = ChunkingOptions(chunk_size=size, chunk_overlap=overlap)
        chunks, seconds = ingest(
            store, embeddings, folder, collection, options, LocalEmbedder().dimension()
        )
        runs = search_all(store, embeddings, collection, queries, modes, top_k)
        rows.append(SweepRow(size, overlap, chunks, seconds, runs))
        calls += task_calls(chunks, len(queries), len(modes))
        print(f"  chunking {size}/{overlap}: {chunks} chunks, ingested in {seconds:.1f} s")
    return SweepResult(rows, str(current_flow_run.id), calls)


def wait_for_server(flow_run_id: str, task_runs: int, timeout: float = 120.0) -> None:
    """Untimed: wait until the server has recorded the flow run's task runs as completed (the
    client reports them as events, recorded later), so that stopping a temporary server does not
    cut its recording short."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        TaskRunFilter,
        TaskRunFilterFlowRunId,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    task_filter = TaskRunFilter(
        flow_run_id=TaskRunFilterFlowRunId(any_=[uuid.UUID(flow_run_id)]),
        state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.COMPLETED])),
    )
    body = {"task_runs": task_filter.model_dump(mode="json", exclude_unset=True)}
    started = time.perf_counter()
    with get_client(sync_client=True) as client:
        while True:
            recorded = int(client.request("POST", "/task_runs/count", json=body).json())
            if recorded >= task_runs:
                return
            if time.perf_counter() - started > timeout:
                print(f"  (server recorded {recorded} of {task_runs} task runs; going on)")
                return
            time.sleep(0.25)


# --------------------------------------------------------------------------- the naive loop


def naive_loop(
    items: Sequence[Item], queries: Sequence[Item], embeddings: Embeddings
) -> tuple[Run, int, float]:
    """1,000-character windows, brute-force cosine, documents ranked by their best window;
    (the run, windows, seconds to embed them)."""
    owner: list[int] = []
    windows: list[str] = []
    for index, item in enumerate(items):
        text = item.text
        for start in range(0, len(text), NAIVE_WINDOW):
            owner.append(index)
            windows.append(text[start : start + NAIVE_WINDOW])
    started = time.perf_counter()
    matrix = np.asarray(embeddings.embed_documents(windows), dtype=np.float32)
    index_seconds = time.perf_counter() - started
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    owners = np.asarray(owner)
    sources = [item.source for item in items]
    run = Run()
    for item in queries:
        started = time.perf_counter()
        vector = np.asarray(embeddings.embed_query(item.query), dtype=np.float32)
        scores = matrix @ (vector / np.linalg.norm(vector))
        best = np.full(len(items), -np.inf, dtype=np.float32)
        np.maximum.at(best, owners, scores)
        order = np.argsort(-best, kind="stable")[:MRR_DEPTH]
        run.seconds[item.name] = time.perf_counter() - started
        run.ranks[item.name], _ = rank_of([sources[i] for i in order], item.source)
    return run, len(windows), index_seconds


def embed_query_times(queries: Sequence[Item], embeddings: Embeddings) -> list[float]:
    """Milliseconds of ``embed_query`` alone, per query."""
    times: list[float] = []
    for item in queries:
        started = time.perf_counter()
        embeddings.embed_query(item.query)
        times.append((time.perf_counter() - started) * 1000)
    return times


# --------------------------------------------------------------------------- printing


def print_table(
    title: str,
    runs: dict[str, Run],
    names: Sequence[str],
    unavailable: str,
    embed_ms: Sequence[float],
) -> dict[str, Metrics]:
    """One half's table; returns its metrics by row."""
    print(f"\n{title} ({len(names)} queries)")
    header = f"{'search':<8}{'hit@1':>8}{'hit@5':>8}{'MRR@10':>8}{'ms/query':>10}{'mean ms':>9}"
    header += f"{'<10 docs':>10}"
    print(header)
    print("-" * len(header))
    table: dict[str, Metrics] = {}
    for row in (*MODES, NAIVE):
        run = runs.get(row)
        if run is None:
            print(f"{row:<8}{unavailable}")
            continue
        m = table[row] = metrics(run, names)
        short = sum(1 for n in names if run.distinct.get(n, MRR_DEPTH) < MRR_DEPTH)
        print(
            f"{row:<8}{m.hit1:>8.3f}{m.hit5:>8.3f}{m.mrr10:>8.3f}{m.ms_median:>10.1f}"
            f"{m.ms_mean:>9.1f}{short:>10}"
        )
    if embed_ms:
        print(
            f"{'embed_query alone':<32}{statistics.median(embed_ms):>10.1f}"
            f"{statistics.fmean(embed_ms):>9.1f}"
        )
    return table


def parse_sweep(text: str) -> list[tuple[int, int]]:
    settings: list[tuple[int, int]] = []
    for part in text.split(","):
        size, _, overlap = part.strip().partition("/")
        settings.append((int(size), int(overlap or 0)))
    return settings


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--limit", type=int, default=400, help="documents (= queries) at most (default 400)"
    )
    parser.add_argument(
        "--min-body", type=int, default=300, help="characters of docstring body at least (300)"
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=50,
        help="chunks asked of search_chunks per query (default 50), deduplicated by document",
    )
    parser.add_argument("--chunk-size", type=int, default=None, help="default: the package's")
    parser.add_argument("--chunk-overlap", type=int, default=None, help="default: the package's")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="instead of the evaluation: chunking settings on the tuning half only",
    )
    parser.add_argument(
        "--sweep-settings",
        default=DEFAULT_SWEEP,
        help=f"size/overlap pairs for --sweep (default {DEFAULT_SWEEP})",
    )
    args = parser.parse_args(argv)
    if args.limit < 2 or args.top_k < 1:
        parser.error("--limit must be at least 2 and --top-k at least 1")
    return args


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wall = time.perf_counter()
    import pandas

    items, dropped = build_eval_set(args.limit, args.min_body)
    test = [i for i in items if i.half == "test"]
    tuning = [i for i in items if i.half == "tuning"]
    print(
        f"Evaluation set: {len(items)} docstrings of numpy {np.__version__} and pandas "
        f"{pandas.__version__} ({len(test)} test, {len(tuning)} tuning); left out: "
        + ", ".join(f"{n} {why}" for why, n in dropped.most_common())
    )
    if args.limit >= MIN_QUERIES and len(items) < MIN_QUERIES:
        print(f"ERROR: only {len(items)} queries, fewer than {MIN_QUERIES}")
        return 1
    supported = modes_supported()
    modes: list[str | None] = list(MODES) if supported else [None]
    unavailable = "" if supported else "  not available yet: search_chunks has no `mode` argument"
    print(
        f"search_chunks modes: {', '.join(MODES) if supported else 'none (dense only)'}; "
        f"top_k={args.top_k} chunks, deduplicated by document"
    )
    given = {"chunk_size": args.chunk_size, "chunk_overlap": args.chunk_overlap}
    given = {key: value for key, value in given.items() if value is not None}
    options = ChunkingOptions(**given) if given else None  # None: the package's defaults

    embeddings = LocalEmbedder().get_embeddings()
    started = time.perf_counter()
    embeddings.embed_query("warm up")
    print(f"Embedder warm-up (model load): {time.perf_counter() - started:.2f} s, not timed")

    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    with tempfile.TemporaryDirectory(prefix="flowkit-bench-retrieval-") as tmp:
        workdir = Path(tmp)
        if args.sweep:
            return sweep(args, workdir, tuning, modes, embeddings, wall)
        effective = options or ChunkingOptions()
        print(
            f"Chunking: {effective.chunk_size}/{effective.chunk_overlap} (size/overlap, "
            f"characters{'' if given else ', the defaults'})"
        )
        folder = workdir / "corpus"
        write_corpus(items, folder)
        with (
            temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: str(workdir / "results")}),
            prefect_backend() as api,
        ):
            print(f"Prefect API: {api}")
            started = time.perf_counter()
            probes = [i.probe for i in test + tuning]
            result = store_side(
                str(folder), str(workdir / "qdrant"), probes, modes, args.top_k, options
            )
            flow_seconds = time.perf_counter() - started
            wait_for_server(result.flow_run_id, result.task_runs)
        print(
            f"Store: {len(items)} documents, {result.chunks} chunks, ingested in "
            f"{result.ingest_seconds:.1f} s; the flow run (ingest and every search) took "
            f"{flow_seconds:.1f} s"
        )
    naive, windows, naive_index = naive_loop(items, test + tuning, embeddings)
    print(
        f"Naive loop: {windows} windows of {NAIVE_WINDOW} characters, "
        f"embedded in {naive_index:.1f} s"
    )
    embed_ms = embed_query_times(test + tuning, embeddings)
    runs = {**result.runs, NAIVE: naive}
    test_names = [i.name for i in test]
    tuning_names = [i.name for i in tuning]
    table = print_table(
        "TEST half (reported)", runs, test_names, unavailable, embed_ms[: len(test)]
    )
    print_table(
        "Tuning half (not reported)", runs, tuning_names, unavailable, embed_ms[len(test) :]
    )
    print(f"\nWall time: {time.perf_counter() - wall:.1f} s")
    report_figures(table, len(test), supported)
    return 0


def sweep(
    args: argparse.Namespace,
    workdir: Path,
    tuning: Sequence[Item],
    modes: Sequence[str | None],
    embeddings: Embeddings,
    wall: float,
) -> int:
    """Chunking settings measured on the tuning half (its documents are the corpus)."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    settings = parse_sweep(args.sweep_settings)
    folder = workdir / "tuning"
    write_corpus(tuning, folder)
    shown = [m for m in modes if m in (None, "dense", "hybrid")]
    print(
        f"Sweep on the tuning half: {len(tuning)} queries against its {len(tuning)} documents; "
        f"settings {args.sweep_settings}"
    )
    with (
        temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: str(workdir / "results")}),
        prefect_backend() as api,
    ):
        print(f"Prefect API: {api}")
        result = sweep_side(
            str(folder),
            str(workdir / "qdrant"),
            [i.probe for i in tuning],
            shown,
            args.top_k,
            settings,
        )
        wait_for_server(result.flow_run_id, result.task_runs)
    rows = result.rows
    naive, windows, _ = naive_loop(tuning, tuning, embeddings)
    names = [i.name for i in tuning]
    header = f"{'chunking':<10}{'chunks':>7}{'ingest s':>9}"
    for mode in shown:
        label = mode or "dense"
        header += f"{label + ' hit@1':>13}{'hit@5':>7}{'MRR@10':>8}{'ms':>7}"
    print(f"\nSweep (tuning half, {len(names)} queries)")
    print(header)
    print("-" * len(header))
    for row in rows:
        line = f"{f'{row.chunk_size}/{row.chunk_overlap}':<10}{row.chunks:>7}"
        line += f"{row.ingest_seconds:>9.1f}"
        for mode in shown:
            m = metrics(row.runs[mode or "dense"], names)
            line += f"{m.hit1:>13.3f}{m.hit5:>7.3f}{m.mrr10:>8.3f}{m.ms_median:>7.1f}"
        print(line)
    m = metrics(naive, names)
    print(
        f"{'naive':<10}{windows:>7}{'':>9}{m.hit1:>13.3f}{m.hit5:>7.3f}{m.mrr10:>8.3f}"
        f"{m.ms_median:>7.1f}   (1,000-character windows, no overlap)"
    )
    print(f"\nWall time: {time.perf_counter() - wall:.1f} s")
    return 0


def report_figures(table: dict[str, Metrics], queries: int, supported: bool) -> None:
    """The headline records, on the test half."""
    where = f"retrieval test half ({queries} queries)"
    naive = table[NAIVE]
    if supported:
        hybrid, dense, sparse = table["hybrid"], table["dense"], table["sparse"]
        for label, ours, base in (
            ("hybrid / dense hit@1", hybrid.hit1, dense.hit1),
            ("hybrid / sparse hit@1", hybrid.hit1, sparse.hit1),
            ("hybrid / dense MRR@10", hybrid.mrr10, dense.mrr10),
            ("hybrid / sparse MRR@10", hybrid.mrr10, sparse.mrr10),
        ):
            report(f"{where}: {label}", ours, base, target="> 1", unit="")
        report(
            f"{where}: hybrid / naive loop hit@5", hybrid.hit5, naive.hit5, target=">= 1", unit=""
        )
        report(f"{where}: hybrid / naive loop MRR@10", hybrid.mrr10, naive.mrr10, unit="")
        timed = ("dense", "sparse", "hybrid")
    else:
        note = "sparse and hybrid not available yet (search_chunks has no mode)"
        for label, ours, base in (
            ("dense / naive loop hit@1", table["dense"].hit1, naive.hit1),
            ("dense / naive loop hit@5", table["dense"].hit5, naive.hit5),
            ("dense / naive loop MRR@10", table["dense"].mrr10, naive.mrr10),
        ):
            report(f"{where}: {label}", ours, base, unit="", note=note)
        timed = ("dense",)
    for mode in timed:
        report(
            f"{where}: search_chunks {mode} / naive loop, median time per query",
            table[mode].ms_median / 1000,
            naive.ms_median / 1000,
        )


if __name__ == "__main__":
    run_main(main)

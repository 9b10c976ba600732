"""Benchmark the ``rag-ingest`` flow against the same work done without Prefect.

What: a seeded synthetic corpus (markdown and text files of English-like prose) is ingested
twice per repeat, into fresh collections in separate Qdrant locations of the same kind:

* **baseline**: a plain loop over the library functions the flow's tasks wrap: ``load_folder``,
  ``split_documents``, ``ensure_collection``, the existing-id check (``existing_doc_hashes`` /
  ``plan_changes``, as the flow does) and, per batch, ``embed_documents`` + ``upsert_chunks``,
  with the same embeddings type, chunking options and batch size; no Prefect at all;
* **flow**: ``rag_ingest(...)`` called directly, with saved ``QdrantStore`` and ``LocalEmbedder``
  blocks, against a temporary Prefect server (``prefect_test_harness``), or against the server
  in ``PREFECT_API_URL`` when it is set.

Why: the flow adds orchestration around the same work (a flow run, one task run per batch,
progress artifacts, results, the store's concurrency lease). Embedding dominates the cost, so
that overhead should stay small: the target is a flow throughput of at least 0.85 of the
baseline. Both sides run in the same process and the same invocation, after one shared model
warm-up, alternating sides when repeating, so machine noise affects them alike; each side is
reported by its fastest run (the least disturbed), with the median alongside.

Exit status: 0 when both sides stored the same number of points (whether or not the target is
met: this is a measurement), 1 on any error, a stored-count mismatch, or a corpus smaller than
``--chunks``.

Run from the repository root: ``.venv/bin/python benchmarks/bench_ingest.py`` (``make bench``).
"""

from __future__ import annotations

import os

# Everything is offline: never let huggingface_hub try the network. Prefect's own console logs
# are lowered to warnings so the report stays readable (the run loggers still send every record
# to the API, as in a real run); set these variables yourself to see them.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from _common import prefect_backend, report, run_main

from flowkit_prefect.blocks.embedders import LocalEmbedder
from flowkit_prefect.blocks.qdrant import QdrantStore
from flowkit_prefect.retrieval.chunking import ChunkingOptions, split_documents
from flowkit_prefect.retrieval.loaders import load_folder
from flowkit_prefect.retrieval.store import (
    ensure_collection,
    existing_doc_hashes,
    plan_changes,
    upsert_chunks,
)
from flowkit_prefect.retrieval.types import SourceDocument
from flowkit_prefect.settings import get_settings

TARGET_RATIO = 0.85
EMBEDDER_TARGET = 0.95  # issue 14: rag-ingest within 5 % of the embedder's own throughput
COLLECTION = "bench-ingest"
BLOCK_PREFIX = "bench-ingest"

LocationKind = Literal["path", "memory"]

# --------------------------------------------------------------------------- synthetic corpus

_SUBJECTS = (
    "The scheduler",
    "A worker",
    "The pipeline",
    "Every deployment",
    "The retriever",
    "Our team",
    "The embedding model",
    "A flow run",
    "The vector store",
    "The operator",
    "This service",
    "The ingest job",
    "A reviewer",
    "The cache layer",
    "Each batch",
    "The tokenizer",
    "The storage engine",
    "A maintainer",
    "The validation step",
    "The release process",
)
_VERBS = (
    "processes",
    "validates",
    "schedules",
    "retries",
    "indexes",
    "summarizes",
    "records",
    "compares",
    "rebuilds",
    "streams",
    "annotates",
    "splits",
    "merges",
    "queues",
    "inspects",
    "publishes",
    "compresses",
    "archives",
    "reconciles",
    "measures",
)
_OBJECTS = (
    "the incoming documents",
    "every failed task",
    "a nightly snapshot",
    "the customer records",
    "several hundred chunks",
    "the quarterly report",
    "its configuration files",
    "the audit log",
    "a backlog of requests",
    "the search results",
    "each changed source",
    "the model outputs",
    "the billing events",
    "a set of markdown pages",
    "the stale entries",
    "the raw transcripts",
)
_CLAUSES = (
    "before the next window opens",
    "while the cluster stays idle",
    "without blocking readers",
    "so that retries remain safe",
    "after the upstream check passes",
    "using a bounded queue",
    "when the lease is renewed",
    "unless an operator intervenes",
    "in deterministic order",
    "because the previous attempt timed out",
    "with a modest memory budget",
    "as soon as the payload arrives",
    "for each tenant separately",
    "under a strict deadline",
)
_ADVERBS = ("quietly", "reliably", "eventually", "carefully", "quickly", "routinely", "rarely")
_TOPICS = (
    "Ingestion",
    "Scheduling",
    "Retries",
    "Observability",
    "Storage",
    "Embeddings",
    "Search",
    "Deployments",
    "Concurrency",
    "Caching",
    "Validation",
    "Releases",
    "Billing",
    "Security",
)


def _sentence(rng: random.Random) -> str:
    parts = [rng.choice(_SUBJECTS)]
    if rng.random() < 0.3:
        parts.append(rng.choice(_ADVERBS))
    parts += [rng.choice(_VERBS), rng.choice(_OBJECTS)]
    if rng.random() < 0.6:
        parts.append(rng.choice(_CLAUSES))
    if rng.random() < 0.25:
        parts.append(f"({rng.randint(2, 9999)} items, {rng.randint(1, 99)}% done)")
    return " ".join(parts) + rng.choice((".", ".", ".", "!", "?"))


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(2, 8)))


def _document(rng: random.Random, index: int, markdown: bool) -> str:
    topic = rng.choice(_TOPICS)
    lines: list[str] = [f"# {topic} note {index}" if markdown else f"{topic} note {index}", ""]
    for section in range(rng.randint(2, 5)):
        if markdown:
            lines += [f"## {rng.choice(_TOPICS)} {section + 1}", ""]
        for _ in range(rng.randint(1, 4)):
            lines += [_paragraph(rng), ""]
        if markdown and rng.random() < 0.4:
            lines += [f"- {_sentence(rng)}" for _ in range(rng.randint(2, 5))] + [""]
    return "\n".join(lines)


def write_corpus(
    folder: Path, min_chunks: int, options: ChunkingOptions, scope: str, seed: int
) -> tuple[int, int]:
    """Write documents until chunking them yields ``min_chunks``; returns (files, chunks).

    Chunk counts are per document, so counting while writing is exact.
    """
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    files = chunks = 0
    while chunks < min_chunks:
        markdown = files % 3 != 2  # two markdown files for one plain-text file
        name = f"topic-{files % 10}/doc-{files:04d}.{'md' if markdown else 'txt'}"
        text = _document(rng, files, markdown)
        path = folder / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        chunks += len(split_documents([SourceDocument(source=name, text=text)], options, scope))
        files += 1
    return files, chunks


# --------------------------------------------------------------------------- the two sides


@dataclass
class RunResult:
    seconds: float  # wall clock
    cpu_seconds: float  # CPU time of this process (all threads) over the same span
    chunks: int
    stored: int


@dataclass
class Stopwatch:
    """Wall-clock and process CPU time between ``start()`` and ``stop()``."""

    wall: float = 0.0
    cpu: float = 0.0

    def start(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


@dataclass
class Config:
    folder: Path
    workdir: Path
    options: ChunkingOptions
    batch_size: int
    location_kind: LocationKind

    def location(self, side: str, repeat: int) -> str:
        if self.location_kind == "memory":
            return ":memory:"
        return str(self.workdir / f"qdrant-{side}-{repeat}")

    @property
    def scope(self) -> str:
        # What the flow derives from `folder`; the same scope gives the same chunk ids.
        return Path(str(self.folder)).as_posix().rstrip("/")


def run_baseline(config: Config, repeat: int) -> RunResult:
    """The flow's work as a plain loop, without Prefect."""
    location = config.location("baseline", repeat)
    embeddings = LocalEmbedder().get_embeddings()
    dimension = LocalEmbedder().dimension()

    watch = Stopwatch()
    watch.start()
    client = QdrantStore(location=location).get_client()  # the flow's engine for this location
    try:
        loaded = load_folder(config.folder)
        chunks = split_documents(loaded.documents, config.options, config.scope)
        created = ensure_collection(client, COLLECTION, dimension)
        stored = (
            {} if created else existing_doc_hashes(client, COLLECTION, [c.chunk_id for c in chunks])
        )
        to_write, _, _ = plan_changes(chunks, stored)
        written = 0
        for first in range(0, len(to_write), config.batch_size):
            batch = to_write[first : first + config.batch_size]
            vectors = embeddings.embed_documents([c.indexed_text for c in batch])
            written += upsert_chunks(client, COLLECTION, batch, vectors, config.scope)
        watch.stop()
        count = client.count(COLLECTION, exact=True).count
    finally:
        client.close()
    if written != len(chunks):
        raise RuntimeError(f"baseline wrote {written} of {len(chunks)} chunks")
    return RunResult(watch.wall, watch.cpu, chunks=len(chunks), stored=count)


def run_embedder(config: Config, repeat: int) -> RunResult:
    """The embedder's own throughput on the same chunks in the same batches: loading and
    splitting too, no store (issue 14: the store must not be the bottleneck)."""
    embeddings = LocalEmbedder().get_embeddings()
    watch = Stopwatch()
    watch.start()
    chunks = split_documents(load_folder(config.folder).documents, config.options, config.scope)
    for first in range(0, len(chunks), config.batch_size):
        embeddings.embed_documents(
            [c.indexed_text for c in chunks[first : first + config.batch_size]]
        )
    watch.stop()
    return RunResult(watch.wall, watch.cpu, chunks=len(chunks), stored=len(chunks))


def run_flow(config: Config, repeat: int, embedder_ref: str, dask: bool = False) -> RunResult:
    """``rag_ingest`` called directly (``rag_ingest_dask`` with ``dask``: its embedding batches
    on a local multi-process Dask cluster), with blocks saved on the Prefect server."""
    if dask:
        from flowkit_prefect.flows.rag_ingest_dask import rag_ingest_dask as rag_ingest
    else:
        from flowkit_prefect.flows.rag_ingest import rag_ingest

    side = "flow-dask" if dask else "flow"
    block_name = f"{BLOCK_PREFIX}-{side}-{repeat}"
    store = QdrantStore(location=config.location(side, repeat))
    store.save(block_name, overwrite=True)
    store_ref = f"{QdrantStore.get_block_type_slug()}/{block_name}"

    watch = Stopwatch()
    watch.start()
    summary = rag_ingest(
        folder=str(config.folder),
        collection=COLLECTION,
        qdrant_store=store_ref,
        embedder=embedder_ref,
        chunking=config.options,
        batch_size=config.batch_size,
    )
    watch.stop()

    # Count through a session of the saved block: for ':memory:' it is the very client the
    # flow wrote to; for a folder it reopens it (after the flow released it).
    with QdrantStore.load(block_name).session() as client:
        count = client.count(COLLECTION, exact=True).count
    chunks = sum(row.chunks for row in summary.sources if row.status != "skipped")
    if summary.chunks_written != chunks:
        raise RuntimeError(f"flow wrote {summary.chunks_written} of {chunks} chunks")
    return RunResult(watch.wall, watch.cpu, chunks=chunks, stored=count)


# --------------------------------------------------------------------------- orchestration


@dataclass
class Side:
    name: str
    run: Callable[[int], RunResult]
    results: list[RunResult] = field(default_factory=list)

    @property
    def best(self) -> RunResult:
        """The fastest run: the one other processes disturbed least."""
        return min(self.results, key=lambda r: r.seconds)

    @property
    def median_seconds(self) -> float:
        return statistics.median(r.seconds for r in self.results)

    @property
    def chunks(self) -> int:
        return self.results[0].chunks

    @property
    def throughput(self) -> float:
        """Chunks per second of the best run."""
        return self.chunks / self.best.seconds

    @property
    def median_throughput(self) -> float:
        return self.chunks / self.median_seconds


def warm_up(config: Config) -> float:
    """Load the ONNX model (one per process, shared by both sides) and run it on one batch of
    real chunks, so that neither side pays the model load or the first allocations; import the
    validation layer (Great Expectations) that the flow's document checkpoint loads once per
    process. Returns the seconds that import took: a fixed cost per run, not per chunk."""
    chunks = split_documents(load_folder(config.folder).documents, config.options, config.scope)
    LocalEmbedder().get_embeddings().embed_documents([c.text for c in chunks[: config.batch_size]])
    started = time.perf_counter()
    import flowkit_prefect.validation  # noqa: F401

    return time.perf_counter() - started


def load_note() -> str:
    """The 1-minute load average against the CPU count, before the runs: other processes
    competing for the CPUs slow the embedding of whichever side runs at that moment."""
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    busy = " (busy: expect noisy timings; use --repeats)" if load > cpus * 0.5 else ""
    return f"load average {load:.2f} on {cpus} CPUs{busy}"


def print_table(sides: Sequence[Side], repeats: int) -> None:
    header = (
        f"{'side':<10}{'chunks':>8}{'seconds':>10}{'chunks/s':>10}{'cpu s':>10}{'median s':>10}"
    )
    print()
    print(
        f"Results: seconds, chunks/s and cpu s of the {'best of ' if repeats > 1 else ''}"
        f"{repeats} run{'s' if repeats > 1 else ''} per side"
    )
    print(header)
    print("-" * len(header))
    for side in sides:
        print(
            f"{side.name:<10}{side.chunks:>8}{side.best.seconds:>10.2f}{side.throughput:>10.1f}"
            f"{side.best.cpu_seconds:>10.2f}{side.median_seconds:>10.2f}"
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--chunks", type=int, default=5000, help="minimum number of chunks (default 5000)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs per side (default 1)")
    parser.add_argument(
        "--location-kind",
        choices=("path", "memory"),
        default="path",
        help="embedded Qdrant on a local folder (default, as deployed) or ':memory:'",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="chunks per upsert batch")
    parser.add_argument("--chunk-size", type=int, default=400, help="characters per chunk")
    parser.add_argument("--chunk-overlap", type=int, default=50, help="characters of overlap")
    parser.add_argument("--seed", type=int, default=20240601, help="corpus random seed")
    parser.add_argument(
        "--dask", action="store_true", help="also run rag-ingest on a local Dask cluster"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.chunks < 1 or args.batch_size < 1:
        parser.error("--repeats, --chunks and --batch-size must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = ChunkingOptions(chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap)
    with tempfile.TemporaryDirectory(prefix="flowkit-bench-") as tmp:
        workdir = Path(tmp)
        config = Config(
            folder=workdir / "corpus",
            workdir=workdir,
            options=options,
            batch_size=args.batch_size,
            location_kind=args.location_kind,
        )
        files, chunks = write_corpus(config.folder, args.chunks, options, config.scope, args.seed)
        print(
            f"Corpus: {files} files, {chunks} chunks (chunk_size={options.chunk_size}, "
            f"overlap={options.chunk_overlap}, seed={args.seed}) in {config.folder}"
        )
        if chunks < args.chunks:
            print(f"ERROR: only {chunks} chunks, fewer than {args.chunks}", file=sys.stderr)
            return 1
        print(
            f"Qdrant: embedded, {args.location_kind}; batch_size={args.batch_size}; "
            f"repeats={args.repeats}; {load_note()}"
        )

        t0 = time.perf_counter()
        imported = warm_up(config)
        print(
            f"Warm-up (model load, validation import {imported:.2f} s: once per flow-run "
            f"process): {time.perf_counter() - t0:.2f} s, not timed"
        )

        from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

        # Flow results go to the temporary folder, not to the user's Prefect home.
        with (
            temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: str(workdir / "results")}),
            prefect_backend() as api,
        ):
            print(f"Prefect API: {api}")
            embedder_ref = f"{LocalEmbedder.get_block_type_slug()}/{BLOCK_PREFIX}"
            LocalEmbedder().save(BLOCK_PREFIX, overwrite=True)
            embedder = Side("embedder", lambda i: run_embedder(config, i))
            baseline = Side("baseline", lambda i: run_baseline(config, i))
            flow = Side("flow", lambda i: run_flow(config, i, embedder_ref))
            dask = Side("flow-dask", lambda i: run_flow(config, i, embedder_ref, dask=True))
            for repeat in range(args.repeats):
                # Alternate which side goes first, so drift (heat, caches) is shared.
                order = (
                    (embedder, baseline, flow) if repeat % 2 == 0 else (flow, baseline, embedder)
                )
                order += (dask,) if args.dask else ()
                for side in order:
                    result = side.run(repeat)
                    side.results.append(result)
                    print(
                        f"  run {repeat + 1}/{args.repeats} {side.name:<8} "
                        f"{result.seconds:7.2f} s  {result.chunks / result.seconds:7.1f} chunks/s"
                        f"  cpu/wall {result.cpu_seconds / result.seconds:4.2f}"
                        f"  stored={result.stored}"
                    )

    sides = (embedder, baseline, flow, dask) if args.dask else (embedder, baseline, flow)
    print_table(sides, args.repeats)
    if args.dask:
        dask_ratio = dask.throughput / flow.throughput
        print(
            f"\nDask (local cluster, {get_settings().dask_workers} processes) / threads "
            f"throughput: {dask_ratio:.3f} "
            f"({dask.throughput:.1f} vs {flow.throughput:.1f} chunks/s)"
        )
    ratio = flow.throughput / baseline.throughput
    overhead = flow.best.seconds - baseline.best.seconds
    print(f"\nflow/baseline throughput: {ratio:.3f}  (flow overhead {overhead:+.2f} s)")
    if args.repeats > 1:
        median_ratio = flow.median_throughput / baseline.median_throughput
        print(f"  from the medians: {median_ratio:.3f} (more exposed to other processes)")
    verdict = "MEETS" if ratio >= TARGET_RATIO else "BELOW"
    print(f"target >= {TARGET_RATIO:.2f}: {verdict}")
    of_embedder = flow.throughput / embedder.throughput
    verdict = "MEETS" if of_embedder >= EMBEDDER_TARGET else "BELOW"
    print(
        f"flow/embedder alone throughput: {of_embedder:.3f}, plain loop/embedder alone: "
        f"{baseline.throughput / embedder.throughput:.3f}; target >= {EMBEDDER_TARGET:.2f}: "
        f"{verdict}"
    )

    mismatches = [
        f"{side.name} run {i + 1}: stored {r.stored} points for {r.chunks} chunks"
        for side in sides
        for i, r in enumerate(side.results)
        if r.stored != r.chunks
    ]
    if any(side.chunks != baseline.chunks for side in sides):
        counts = ", ".join(f"{side.name} {side.chunks}" for side in sides)
        mismatches.append(f"chunk counts differ: {counts}")
    if mismatches:
        print("ERROR: stored point counts differ:\n  " + "\n  ".join(mismatches), file=sys.stderr)
        return 1
    print(f"Stored points: {baseline.chunks} in every collection of every side")
    report_figures(embedder, baseline, flow, dask if args.dask else None)
    return 0


def report_figures(embedder: Side, baseline: Side, flow: Side, dask: Side | None) -> None:
    """The headline records: flow / loop and flow / embedder throughput (the targets), Dask /
    threads (info)."""
    report(
        f"rag-ingest flow / plain loop throughput ({baseline.chunks} chunks)",
        flow.throughput,
        baseline.throughput,
        target=f">= {TARGET_RATIO}",
        unit="chunks/s",
    )
    report(
        f"rag-ingest flow / the embedder alone throughput ({baseline.chunks} chunks)",
        flow.throughput,
        embedder.throughput,
        target=f">= {EMBEDDER_TARGET}",
        unit="chunks/s",
    )
    if dask is not None:
        report(
            f"rag-ingest on Dask / on threads throughput ({baseline.chunks} chunks)",
            dask.throughput,
            flow.throughput,
            unit="chunks/s",
        )


if __name__ == "__main__":
    run_main(main)

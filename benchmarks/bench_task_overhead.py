"""Per-task overhead of flowkit's task wrappers against a bare Prefect task, call by call.

What: inside one flow run (a sync flow, against a temporary Prefect server or the server in
``PREFECT_API_URL``), ``--calls`` sequential calls (default 200) each way, with a unique prompt
per call and a fresh ``FakeChatModel`` (deterministic, offline, zero latency) per side and repeat:

* **bare task**: ``@task(cache_policy=NO_CACHE)`` whose body is ``model.invoke(prompt)``. No
  caching work at all: the strict baseline. (A plain ``@task`` would hash its inputs for the
  default cache policy on every call, the model with its growing call record included, which
  would only slow the baseline and flatter our side.)
* **invoke_llm, cache off**: ``invoke_llm(model, prompt, config={"cache": False})``: the
  ``llm-call`` task with our retries, timeout, fallback chain, usage tracking and the
  ``flowkit.llm.call`` event;
* **invoke_llm, cache miss**: the default config (cache on): the same plus our cache key and the
  result persisted to storage (a temporary folder), every prompt new so every call is a miss;
* **embed-chunks task** against a bare task calling ``embed_documents`` on the same
  ``HashEmbeddings`` (our retrieval tasks are plain tasks with transient retries and no cache).

Each side is reported by its best repeat (``--repeats``, default 3; sides alternate order) as
milliseconds per call; the ratio ours / bare is held to **<= 1.1**. One row is information, not
held to the target: *with 50 ms provider latency* (``--latency-calls`` calls, cache off, against
the bare task on the same slow model), the overhead next to a real provider. The zero-latency rows
are the measurement.

When a target is missed (or with ``--profile``), one more pass of the bare task and of
``invoke_llm`` (cache off) runs under cProfile, in the calling thread and in Prefect's run-sync
loop thread (where an async task run from a sync flow runs), and the top functions by own and by
cumulative time are printed: where the time goes. Background threads (events, logs) are not in
the profile.

Exit status: 0 when it ran (a measurement, whether or not the target is met); 1 on an error or a
reply that was not a fresh model call.

    .venv/bin/python benchmarks/bench_task_overhead.py [--calls 200] [--repeats 3] [--profile]
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import argparse
import cProfile
import io
import pstats
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import prefect_backend, report, run_main
from bench_llm_fanout import Timing, _flow_run_id, wait_for_server
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.asyncutils import run_coro_as_sync

from flowkit_prefect.llm import LLMTaskConfig, invoke_llm
from flowkit_prefect.retrieval.tasks import embed_chunks
from flowkit_prefect.testing import FakeChatModel, HashEmbeddings

TARGET = 1.1
CACHE_OFF: LLMTaskConfig = {"cache": False}
LATENCY_SECONDS = 0.05
WARM_UP_CALLS = 5


@task(name="bare-llm-call", cache_policy=NO_CACHE)
def bare_llm_call(model: BaseChatModel, prompt: str) -> str:
    """The baseline: a task run around the model call, nothing else."""
    return str(model.invoke(prompt).text)


@task(name="bare-embed", cache_policy=NO_CACHE)
def bare_embed(embeddings: Embeddings, texts: list[str]) -> list[list[float]]:
    """The baseline of the embed-chunks task: a task run around ``embed_documents``."""
    return embeddings.embed_documents(texts)


# --------------------------------------------------------------------------- the sides

Call = Callable[[str], Any]
"""One call of a side, given its unique prompt."""


def _fresh_call(model: FakeChatModel, kind: str, prompt: str, text: str) -> None:
    """Check that the model was called once for ``prompt``, then empty its call record, so
    that no side carries a growing history into the next task's parameters."""
    if len(model.calls) != 1 or text != "ok":
        raise RuntimeError(f"{kind}: {prompt!r} was not one fresh model call ({text!r})")
    model.calls.clear()
    model.call_metadata.clear()


def llm_side(kind: str, latency: float) -> Callable[[], Call]:
    """A factory of one side's call on a fresh model: ``bare``, ``ours`` (cache off) or
    ``ours-cache`` (cache on, every prompt a miss). Each reply is checked to be one fresh model
    call."""

    def make() -> Call:
        model = FakeChatModel(delay_seconds=latency)
        config = CACHE_OFF if kind == "ours" else None

        def call(prompt: str) -> None:
            if kind == "bare":
                text = bare_llm_call(model, prompt)
            else:
                result = invoke_llm(model, prompt, config=config)
                text = "(cached)" if result.cached else result.text
            _fresh_call(model, kind, prompt, text)

        return call

    return make


def embed_side(kind: str) -> Callable[[], Call]:
    """A factory of one embedding side's call: ``bare`` task or our ``embed-chunks`` task."""

    def make() -> Call:
        embeddings = HashEmbeddings()
        chosen = bare_embed if kind == "bare" else embed_chunks
        return lambda prompt: chosen(embeddings, [prompt])

    return make


@dataclass
class Side:
    """One way of making the calls, and its timed repeats (seconds per call)."""

    name: str
    make: Callable[[], Call]
    calls: int
    per_call: list[float] = field(default_factory=list)
    cpu_per_call: list[float] = field(default_factory=list)
    task_runs: int = 0

    @property
    def best(self) -> float:
        return min(self.per_call)

    @property
    def best_cpu(self) -> float:
        return self.cpu_per_call[self.per_call.index(self.best)]

    def run(self, tag: str) -> None:
        """``calls`` sequential calls on a fresh model, each with a prompt of its own."""
        call = self.make()
        self.task_runs += WARM_UP_CALLS + self.calls
        for i in range(WARM_UP_CALLS):  # untimed: first task runs, clients
            call(f"warm {self.name} {tag} {i}")
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(self.calls):
            call(f"Say ok ({self.name}, {tag}, call {i})")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self.per_call.append(wall / self.calls)
        self.cpu_per_call.append(cpu / self.calls)


@dataclass(frozen=True)
class Pair:
    """Ours against its baseline: a line of the table and a record."""

    figure: str
    ours: Side
    bare: Side
    target: str | None = None

    @property
    def ratio(self) -> float:
        return self.ours.best / self.bare.best


def build_pairs(calls: int, latency_calls: int) -> list[Pair]:
    """The comparisons: invoke_llm (cache off, cache miss), embed-chunks, and the latency row."""
    bare = Side("bare task", llm_side("bare", 0.0), calls)
    pairs = [
        Pair(
            "invoke_llm (cache off) / bare task",
            Side("invoke_llm, cache off", llm_side("ours", 0.0), calls),
            bare,
            f"<= {TARGET}",
        ),
        Pair(
            "invoke_llm (cache on, miss) / bare task",
            Side("invoke_llm, cache miss", llm_side("ours-cache", 0.0), calls),
            bare,
            f"<= {TARGET}",
        ),
        Pair(
            "embed-chunks task / bare task",
            Side("embed-chunks task", embed_side("ours"), calls),
            Side("bare embed task", embed_side("bare"), calls),
            f"<= {TARGET}",
        ),
    ]
    if latency_calls:
        ms = f"{LATENCY_SECONDS * 1000:.0f} ms"
        pairs.append(
            Pair(
                f"invoke_llm (cache off) / bare task, with {ms} provider latency",
                Side(f"invoke_llm, {ms} latency", llm_side("ours", LATENCY_SECONDS), latency_calls),
                Side(f"bare task, {ms} latency", llm_side("bare", LATENCY_SECONDS), latency_calls),
                None,
            )
        )
    return pairs


def unique_sides(pairs: Sequence[Pair]) -> list[Side]:
    """Every side once, in the order of the pairs (the bare task is shared)."""
    sides: list[Side] = []
    for pair in pairs:
        sides += [s for s in (pair.bare, pair.ours) if all(s is not other for other in sides)]
    return sides


# --------------------------------------------------------------------------- profile


def _enable_in_loop_thread(profiler: cProfile.Profile, on: bool) -> None:
    """Switch ``profiler`` on or off in Prefect's run-sync loop thread (where an async task
    called from a sync flow runs), from the calling thread."""

    async def switch() -> None:
        if on:
            profiler.enable()
        else:
            profiler.disable()

    run_coro_as_sync(switch())


_WAITS = ("'acquire' of '_thread.lock'", "'poll' of 'select.epoll'")


def _waiting_share(stats: pstats.Stats) -> float:
    """The share of a thread's profiled time spent blocked (locks, the event loop's poll)."""
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in entries.values()) or 1.0
    waiting = sum(entry[2] for key, entry in entries.items() if any(w in key[2] for w in _WAITS))
    return waiting / total


def profile_pass(side: Side, top: int) -> str:
    """One more pass of ``side`` under cProfile (this thread and the run-sync loop thread):
    for each thread that did the work, the top functions by own time and by cumulative time."""
    here, loop = cProfile.Profile(), cProfile.Profile()
    _enable_in_loop_thread(loop, True)
    here.enable()
    side.run("profile")
    here.disable()
    _enable_in_loop_thread(loop, False)
    per_call = side.per_call.pop() * 1e3  # not a timed repeat
    side.cpu_per_call.pop()
    out = io.StringIO()
    out.write(f"\n=== {side.name}: {side.calls} calls, {per_call:.2f} ms/call under the profiler\n")
    for name, profiler in (("calling thread", here), ("run-sync loop thread", loop)):
        stats = pstats.Stats(profiler, stream=out)
        if not stats.stats or _waiting_share(stats) > 0.8:  # type: ignore[attr-defined]
            out.write(f"--- {name}: waiting, not working\n")
            continue
        out.write(f"--- {name}: top {top} by own time\n")
        stats.sort_stats("tottime").print_stats(top)
        out.write(f"--- {name}: top {top} by cumulative time\n")
        stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def summary(pairs: Sequence[Pair]) -> str:
    """What our wrapper adds per call, in milliseconds of wall and of process CPU."""
    lines = []
    for pair in pairs:
        if pair.target is None:
            continue
        wall = (pair.ours.best - pair.bare.best) * 1e3
        cpu = (pair.ours.best_cpu - pair.bare.best_cpu) * 1e3
        lines.append(f"{pair.figure}: {wall:+.2f} ms per call ({cpu:+.2f} ms of process CPU)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=200, help="sequential calls per side (200)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per side (3)")
    parser.add_argument(
        "--latency-calls",
        type=int,
        default=40,
        help=f"calls for the {LATENCY_SECONDS * 1000:.0f} ms latency row (40; 0 skips it)",
    )
    parser.add_argument("--profile", action="store_true", help="profile even when targets are met")
    parser.add_argument("--no-profile", action="store_true", help="never profile")
    parser.add_argument("--top", type=int, default=25, help="functions per profile (25)")
    args = parser.parse_args(argv)
    if min(args.calls, args.repeats) < 1 or args.latency_calls < 0:
        parser.error("--calls and --repeats must be at least 1")
    return args


def print_table(pairs: Sequence[Pair]) -> None:
    """Seconds per call (best repeat), CPU per call, ratio and verdict of each pair."""
    width = max(len(pair.figure) for pair in pairs) + 2
    header = (
        f"{'comparison':<{width}}{'ours ms':>9}{'bare ms':>9}{'cpu ms':>8}{'bare cpu':>9}"
        f"{'ratio':>7}  verdict"
    )
    print(header)
    print("-" * len(header))
    for pair in pairs:
        verdict = "info" if pair.target is None else ("MET" if pair.ratio <= TARGET else "NOT MET")
        print(
            f"{pair.figure:<{width}}{pair.ours.best * 1e3:>9.2f}{pair.bare.best * 1e3:>9.2f}"
            f"{pair.ours.best_cpu * 1e3:>8.2f}{pair.bare.best_cpu * 1e3:>9.2f}"
            f"{pair.ratio:>7.3f}  {verdict}"
        )


def measure(args: argparse.Namespace, pairs: Sequence[Pair]) -> str:
    """Every side, ``--repeats`` times, in one flow run; returns the profile text (or "").
    Then, untimed, waits until the server has recorded every task run (so that the temporary
    server does not stop with events still in flight)."""
    sides = unique_sides(pairs)
    tag = uuid.uuid4().hex[:8]
    seen: dict[str, str] = {}

    @flow(name="bench-task-overhead", persist_result=False)
    def overhead() -> str:
        seen["flow_run_id"] = _flow_run_id()
        for repeat in range(args.repeats):
            order = sides if repeat % 2 == 0 else sides[::-1]
            for side in order:
                side.run(f"{tag}-{repeat}")
                print(
                    f"  pass {repeat + 1}/{args.repeats} {side.name:<28}"
                    f"{side.per_call[-1] * 1e3:8.2f} ms/call  "
                    f"cpu {side.cpu_per_call[-1] * 1e3:6.2f} ms/call",
                    flush=True,
                )
        missed = any(p.target is not None and p.ratio > TARGET for p in pairs)
        if args.no_profile or not (missed or args.profile):
            return ""
        return "".join(profile_pass(side, args.top) for side in sides[:2])

    profile = overhead()
    runs = sum(side.task_runs for side in sides)
    wait_for_server(Timing("overhead", runs, 0.0, 0.0, 0, flow_run_id=seen["flow_run_id"]))
    return profile


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pairs = build_pairs(args.calls, args.latency_calls)
    print(
        f"{args.calls} sequential calls per side ({args.latency_calls} with latency), "
        f"{args.repeats} repeats, best repeat shown; load average {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} CPUs."
    )
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="flowkit-bench-overhead-") as tmp,
        temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: str(Path(tmp) / "results")}),
        prefect_backend() as api,
    ):
        print(f"Prefect API: {api}")
        profile = measure(args, pairs)
    print(f"\nTotal {time.perf_counter() - started:.0f} s, temporary server start-up included.\n")
    print_table(pairs)
    for pair in pairs:
        report(pair.figure + " (per call)", pair.ours.best, pair.bare.best, target=pair.target)
    print("\n" + summary(pairs))
    if profile:
        print("\nWhere the time goes (one more pass of the bare task and of invoke_llm):")
        print(profile)
    return 0


if __name__ == "__main__":
    run_main(main)

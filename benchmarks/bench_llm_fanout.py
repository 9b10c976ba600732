"""Benchmark ``map_llm`` / ``amap_llm`` fan-out against LangChain's own ``abatch``.

What: a chat model that waits a fixed latency (``asyncio.sleep``, no CPU) and echoes the prompt
answers ``--calls`` prompts (default 500) at ``--concurrency`` calls in flight (default 25), in
one process and one invocation:

* **abatch**: ``model.abatch(prompts, config={"max_concurrency": C})``, no Prefect at all;
* **flow map_llm**: a sync Prefect flow calling ``map_llm(..., config={"cache": False})``: one
  ``llm-call`` task run per prompt;
* **flow amap_llm**: the same from an async flow, ``await amap_llm(...)``;
* **flow limit_name**: ``map_llm`` with ``limit_name`` set, so every call also takes a slot of
  a Prefect global concurrency limit through the API (the cross-worker path); ``--limit-calls``
  prompts (default 200, as this path is much slower);
* **threads runner** / **Dask runner**: ``map_llm(..., on_task_runner=True)``, each call's
  ``llm-call`` task run (the sync variant) submitted to the flow's task runner: the default
  thread pool, then a local 2-process Dask cluster (``prefect-dask``; the row is skipped
  without it), with ``--runner-calls`` prompts (default 200). Dask workers count their own
  model calls, so that row's "model calls" are the results that were not cache replays;
* **cache**: a flow fanning out ``--cache-prompts`` unique prompts with the cache on, run twice;
  the model's own thread-safe counter must show zero calls on the second run.

Why: the fan-out wraps every model call in a task run (state changes, events, logs, usage
tracking). With a remote model the latency dominates, so the orchestration should cost little:
the targets are a flow wall time of at most 1.15 x the ideal (latency x calls / concurrency,
in whole waves) and at most 1.1 x ``abatch`` with as many prompts on the same model. A flow's
wall time is taken around the whole flow call (flow-run creation and teardown included); the
time inside the fan-out call is shown as well. After each flow the script waits (untimed, shown
as ``lag s``) until the server has recorded all of that run's task runs as completed, so that
one row's backlog of events does not slow the next row.

Flows run against a temporary Prefect server (``prefect_test_harness``), or against the server
in ``PREFECT_API_URL`` when it is set. Results and cache records go to a temporary folder.

Exit status: 0 when everything ran and the cached re-run made no model call (whether or not the
timing targets are met: this is a measurement); 1 on an error, a wrong echo, a first cached run
that did not call the model for every prompt, any model call on the cached re-run, or when
``--deadline`` passed.

Run from the repository root: ``.venv/bin/python benchmarks/bench_llm_fanout.py`` (``make bench``).
"""

from __future__ import annotations

import os

# Loopback only, and Prefect's per-task console lines lowered to warnings so the report stays
# readable (the run loggers still send every record to the API, as in a real run).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import argparse
import asyncio
import contextlib
import math
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import prefect_backend, report
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from prefect import flow
from prefect.context import FlowRunContext
from pydantic import PrivateAttr

from flowkit_prefect.llm import LLMResult, LLMTaskConfig, amap_llm, map_llm
from flowkit_prefect.testing import FakeChatModel

TARGET_VS_IDEAL = 1.15
TARGET_VS_ABATCH = 1.10
NO_CACHE: LLMTaskConfig = {"cache": False}
CACHE: LLMTaskConfig = {"cache": True}
SERVER_CATCH_UP_TIMEOUT = 120.0
TIMED_ROWS = {"flow map_llm", "flow amap_llm", "flow limit_name"}


class DeadlineExceeded(Exception):
    """Raised in the main thread by SIGALRM when ``--deadline`` has passed."""


# --------------------------------------------------------------------------- the model


class EchoChatModel(BaseChatModel):
    """Replies with the last message's text after ``latency`` seconds (async: holds no CPU).

    ``model_calls`` counts every generation under a lock, independently of flowkit's code, so a
    cache replay (no call) is told apart from a call. No per-call history is kept, so the task
    parameters stay the same size however many calls were made.
    """

    latency: float = 0.5
    model_name: str = "bench-echo"
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _calls: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "flowkit-bench-echo"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "latency": self.latency}

    @property
    def model_calls(self) -> int:
        with self._lock:
            return self._calls

    def _reply(self, messages: list[BaseMessage]) -> ChatResult:
        with self._lock:
            self._calls += 1
        text = messages[-1].text
        tokens = len(text.split())
        message = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": tokens,
                "output_tokens": tokens,
                "total_tokens": 2 * tokens,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        time.sleep(self.latency)
        return self._reply(messages)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        await asyncio.sleep(self.latency)
        return self._reply(messages)


# --------------------------------------------------------------------------- measurements


@dataclass
class Timing:
    """One timed fan-out."""

    name: str
    calls: int
    wall: float  # seconds around the whole call (flow run included for flows)
    cpu: float  # process CPU seconds (all threads) over the same span
    model_calls: int  # what the model's counter saw
    inner: float | None = None  # seconds inside map_llm / amap_llm (flows only)
    lag: float | None = None  # seconds after return until the server recorded every task run
    flow_run_id: str | None = None
    compared: bool = True  # False: no ideal or abatch to compare with (the cache rows)


class Stopwatch:
    """Wall-clock and process CPU seconds between entering and leaving the block."""

    wall: float = 0.0
    cpu: float = 0.0

    def __enter__(self) -> Stopwatch:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def make_prompts(count: int, tag: str) -> list[str]:
    """Distinct prompts, so that no reply can come from an earlier run's cache."""
    return [f"Echo item {i} of batch {tag}" for i in range(count)]


def check_echo(name: str, prompts: Sequence[str], texts: Sequence[str]) -> None:
    if list(texts) != list(prompts):
        wrong = sum(1 for p, t in zip(prompts, texts, strict=False) if p != t)
        wrong += abs(len(prompts) - len(texts))
        raise RuntimeError(f"{name}: {wrong} of {len(prompts)} replies are not the prompt's echo")


def run_abatch(model: EchoChatModel, prompts: list[str], concurrency: int) -> Timing:
    inputs: list[LanguageModelInput] = list(prompts)
    before = model.model_calls
    with Stopwatch() as watch:
        replies = asyncio.run(model.abatch(inputs, config={"max_concurrency": concurrency}))
    check_echo("abatch", prompts, [str(r.text) for r in replies])
    return Timing("abatch", len(prompts), watch.wall, watch.cpu, model.model_calls - before)


def _flow_run_id() -> str:
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        raise RuntimeError("not inside a flow run")
    return str(ctx.flow_run.id)


def run_sync_flow(
    name: str,
    model: BaseChatModel,
    prompts: list[str],
    concurrency: int,
    config: LLMTaskConfig,
    limit_name: str | None = None,
    task_runner: Any = None,
) -> tuple[Timing, list[LLMResult]]:
    """A sync flow calling ``map_llm``; returns the timing and the results. With a
    ``task_runner`` (``"threads"`` for the default pool, or a runner) the calls are submitted
    to it (``on_task_runner=True``)."""
    seen: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if task_runner is not None and task_runner != "threads":
        options["task_runner"] = task_runner

    @flow(name=f"bench-{name.replace(' ', '-')}", **options)
    def fanout() -> list[LLMResult]:
        seen["flow_run_id"] = _flow_run_id()
        start = time.perf_counter()
        results = map_llm(
            model,
            prompts,
            config=config,
            max_concurrency=concurrency,
            limit_name=limit_name,
            on_task_runner=True if task_runner is not None else None,
        )
        seen["inner"] = time.perf_counter() - start
        return results

    before = getattr(model, "model_calls", 0)
    with Stopwatch() as watch:
        results = fanout()
    check_echo(name, prompts, [r.text for r in results])
    elsewhere = task_runner is not None and task_runner != "threads"
    timing = Timing(
        name,
        len(prompts),
        watch.wall,
        watch.cpu,
        sum(not r.cached for r in results)
        if elsewhere
        else getattr(model, "model_calls", 0) - before,
        inner=seen["inner"],
        flow_run_id=seen["flow_run_id"],
    )
    return timing, results


def run_async_flow(name: str, model: EchoChatModel, prompts: list[str], concurrency: int) -> Timing:
    """An async flow awaiting ``amap_llm`` (cache off)."""
    seen: dict[str, Any] = {}

    @flow(name=f"bench-{name.replace(' ', '-')}")
    async def fanout() -> list[str]:
        seen["flow_run_id"] = _flow_run_id()
        start = time.perf_counter()
        results = await amap_llm(model, prompts, config=NO_CACHE, max_concurrency=concurrency)
        seen["inner"] = time.perf_counter() - start
        return [r.text for r in results]

    before = model.model_calls
    with Stopwatch() as watch:
        texts: list[str] = asyncio.run(fanout())
    check_echo(name, prompts, texts)
    return Timing(
        name,
        len(prompts),
        watch.wall,
        watch.cpu,
        model.model_calls - before,
        inner=seen["inner"],
        flow_run_id=seen["flow_run_id"],
    )


def wait_for_server(timing: Timing, timeout: float = SERVER_CATCH_UP_TIMEOUT) -> None:
    """Untimed: wait until the server has recorded every task run of the flow run as completed
    (the client reports task runs as events, which the server records later); sets ``lag``."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        TaskRunFilter,
        TaskRunFilterFlowRunId,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    assert timing.flow_run_id is not None
    task_filter = TaskRunFilter(
        flow_run_id=TaskRunFilterFlowRunId(any_=[uuid.UUID(timing.flow_run_id)]),
        state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.COMPLETED])),
    )
    body = {"task_runs": task_filter.model_dump(mode="json", exclude_unset=True)}
    start = time.perf_counter()
    with get_client(sync_client=True) as client:
        while True:
            recorded = int(client.request("POST", "/task_runs/count", json=body).json())
            timing.lag = time.perf_counter() - start
            if recorded >= timing.calls:
                return
            if timing.lag > timeout:
                print(
                    f"  (server recorded {recorded} of {timing.calls} task runs of "
                    f"{timing.name} after {timeout:.0f} s; going on)"
                )
                return
            time.sleep(0.25)


def delete_limits(prefix: str) -> None:
    """Remove the global concurrency limits a ``limit_name`` run created (this matters only
    when the benchmark runs against a server of yours)."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for suffix in ("", "-rpm", "-tpm"):
            with contextlib.suppress(ObjectNotFound):
                client.delete_global_concurrency_limit_by_name(f"{prefix}{suffix}")


# --------------------------------------------------------------------------- report


def dask_runner(concurrency: int) -> Any:
    """A local 2-process Dask cluster on loopback with a thread per call in flight, or None
    without prefect-dask."""
    try:
        from prefect_dask.task_runners import DaskTaskRunner
    except ImportError:
        return None
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": 2,
            "threads_per_worker": math.ceil(concurrency / 2),
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": None,
        }
    )


def ideal_seconds(calls: int, concurrency: int, latency: float) -> float:
    """The model's latency times the number of waves of ``concurrency`` calls."""
    return math.ceil(calls / concurrency) * latency


def verdict(ratio: float, target: float) -> str:
    return "MEETS" if ratio <= target else "BELOW"


def _cell(value: float | None, width: int, digits: int = 2) -> str:
    return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def print_table(
    rows: Sequence[Timing],
    abatch: dict[int, Timing],
    concurrency: int,
    latency: float,
    timed: set[str],
) -> None:
    """One line per row; rows named in ``timed`` are held to the two targets."""
    header = (
        f"{'variant':<17}{'calls':>6}{'conc':>5}{'lat s':>6}{'ideal s':>8}{'abatch s':>9}"
        f"{'wall s':>8}{'inner s':>8}{'lag s':>7}{'/ideal':>7}{'/abatch':>8}{'cpu ms/call':>12}"
        f"{'model calls':>12}  {f'/ideal<={TARGET_VS_IDEAL}':<14}{f'/abatch<={TARGET_VS_ABATCH}'}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        ideal = ideal_seconds(row.calls, concurrency, latency)
        reference = abatch.get(row.calls) if row.compared else None
        vs_ideal = row.wall / ideal if row.compared else None
        vs_abatch = row.wall / reference.wall if reference else None
        held = row.name in timed
        targets = (
            f"{verdict(vs_ideal or 0.0, TARGET_VS_IDEAL):<14}"
            f"{verdict(vs_abatch, TARGET_VS_ABATCH) if vs_abatch is not None else '-'}"
            if held
            else f"{'-':<14}-"
        )
        print(
            f"{row.name:<17}{row.calls:>6}{concurrency:>5}{latency:>6.2f}"
            f"{_cell(ideal if row.compared else None, 8)}"
            f"{_cell(reference.wall if reference else None, 9)}{row.wall:>8.2f}"
            f"{_cell(row.inner, 8)}{_cell(row.lag, 7, 1)}{_cell(vs_ideal, 7, 3)}"
            f"{_cell(vs_abatch, 8, 3)}{1000 * row.cpu / row.calls:>12.2f}"
            f"{row.model_calls:>12}  {targets}"
        )


def report_rows(
    rows: Sequence[Timing],
    abatch: dict[int, Timing],
    concurrency: int,
    latency: float,
    timed: set[str],
) -> None:
    """The headline records: each flow row against the ideal and ``abatch`` (held to the
    targets for the rows in ``timed``, info for the runner rows)."""
    for row in rows:
        if not row.compared or row.name == "abatch":
            continue
        held = row.name in timed
        sizes = f"{row.calls} calls, concurrency {concurrency}, latency {latency:g} s"
        ideal = ideal_seconds(row.calls, concurrency, latency)
        report(
            f"LLM fan-out {row.name} / ideal ({sizes})",
            row.wall,
            ideal,
            target=f"<= {TARGET_VS_IDEAL}" if held else None,
        )
        reference = abatch.get(row.calls)
        if reference is not None:
            report(
                f"LLM fan-out {row.name} / abatch ({sizes})",
                row.wall,
                reference.wall,
                target=f"<= {TARGET_VS_ABATCH}" if held else None,
            )


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=500, help="prompts per fan-out (500)")
    parser.add_argument("--concurrency", type=int, default=25, help="calls in flight (25)")
    parser.add_argument("--latency", type=float, default=0.5, help="model latency in s (0.5)")
    parser.add_argument(
        "--limit-calls",
        type=int,
        default=200,
        help="prompts for the limit_name row (200; 0 skips the row)",
    )
    parser.add_argument(
        "--runner-calls",
        type=int,
        default=200,
        help="prompts for the threads / Dask runner rows (200; 0 skips them)",
    )
    parser.add_argument(
        "--cache-prompts", type=int, default=50, help="unique prompts for the cache check (50)"
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=480.0,
        help="give up with exit status 1 after this many seconds (480)",
    )
    args = parser.parse_args(argv)
    if (
        min(args.calls, args.concurrency, args.cache_prompts) < 1
        or min(args.limit_calls, args.runner_calls) < 0
    ):
        parser.error("--calls, --concurrency and --cache-prompts must be at least 1")
    if args.latency <= 0 or args.deadline <= 0:
        parser.error("--latency and --deadline must be positive")
    return args


def arm_deadline(seconds: float) -> Callable[[], None]:
    """SIGALRM raises ``DeadlineExceeded`` in the main thread (context managers unwind, so the
    temporary server stops); should that not end the process within 30 s, a daemon timer exits
    hard. Returns a function that disarms both."""

    def on_alarm(signum: int, frame: object) -> None:
        raise DeadlineExceeded(f"--deadline of {seconds:.0f} s passed")

    def hard_exit() -> None:
        print(f"ERROR: still running {seconds + 30:.0f} s after start; exiting", file=sys.stderr)
        os._exit(1)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    timer = threading.Timer(seconds + 30, hard_exit)
    timer.daemon = True
    timer.start()

    def disarm() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        timer.cancel()

    return disarm


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    disarm = arm_deadline(args.deadline)
    try:
        return run(args)
    finally:
        disarm()


def run(args: argparse.Namespace) -> int:
    calls, concurrency, latency = args.calls, args.concurrency, args.latency
    model = EchoChatModel(latency=latency)
    tag = uuid.uuid4().hex[:8]
    print(
        f"Model: async echo, latency {latency:.3f} s. {calls} calls at concurrency {concurrency}: "
        f"ideal {ideal_seconds(calls, concurrency, latency):.2f} s. "
        f"Load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs."
    )

    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    rows: list[Timing] = []
    abatch: dict[int, Timing] = {}

    def show(timing: Timing) -> None:
        rows.append(timing)
        extra = f", server lag {timing.lag:.1f} s" if timing.lag is not None else ""
        print(
            f"  {timing.name:<17}{timing.wall:7.2f} s  ({timing.calls} calls, "
            f"{timing.model_calls} model calls{extra})"
        )

    def flow_row(timing: Timing) -> Timing:
        wait_for_server(timing)
        show(timing)
        return timing

    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="flowkit-bench-llm-") as tmp,
        temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: str(Path(tmp) / "results")}),
        prefect_backend() as api,
    ):
        print(f"Prefect API: {api}")

        # Warm-up, not timed: imports, API clients, the run-sync loop, the first task runs.
        t0 = time.perf_counter()
        warm = make_prompts(concurrency, f"warm-{tag}")
        run_abatch(model, warm, concurrency)
        wait_for_server(run_sync_flow("warm-up", model, warm, concurrency, NO_CACHE)[0])
        print(
            f"Warm-up ({len(warm)} calls: abatch + flow), not timed: "
            f"{time.perf_counter() - t0:.2f} s"
        )

        for size in sorted({calls, args.limit_calls, args.runner_calls} - {0}):
            abatch[size] = run_abatch(model, make_prompts(size, f"abatch{size}-{tag}"), concurrency)
            show(abatch[size])

        prompts = make_prompts(calls, f"sync-{tag}")
        flow_row(run_sync_flow("flow map_llm", model, prompts, concurrency, NO_CACHE)[0])
        prompts = make_prompts(calls, f"async-{tag}")
        flow_row(run_async_flow("flow amap_llm", model, prompts, concurrency))

        if args.limit_calls:
            limit_name = f"bench-{tag}"
            prompts = make_prompts(args.limit_calls, f"limit-{tag}")
            try:
                timing, _ = run_sync_flow(
                    "flow limit_name", model, prompts, concurrency, NO_CACHE, limit_name
                )
            finally:
                delete_limits(f"flowkit-llm-{limit_name}")
            flow_row(timing)

        if args.runner_calls:
            prompts = make_prompts(args.runner_calls, f"threads-{tag}")
            flow_row(
                run_sync_flow(
                    "threads runner", model, prompts, concurrency, NO_CACHE, task_runner="threads"
                )[0]
            )
            dask = dask_runner(concurrency)
            if dask is None:
                print("  Dask runner      skipped: prefect-dask is not installed (the dask extra)")
            else:
                prompts = make_prompts(args.runner_calls, f"dask-{tag}")
                # The echo model's lock does not pickle; the same echo, picklable, for the workers.
                travelling = FakeChatModel(
                    respond=lambda messages, **_: messages[-1].text, delay_seconds=latency
                )
                flow_row(
                    run_sync_flow(
                        "Dask runner", travelling, prompts, concurrency, NO_CACHE, task_runner=dask
                    )[0]
                )

        cache_prompts = make_prompts(args.cache_prompts, f"cache-{tag}")
        first, _ = run_sync_flow("cache 1st run", model, cache_prompts, concurrency, CACHE)
        second, replayed = run_sync_flow("cache re-run", model, cache_prompts, concurrency, CACHE)
        first.compared = second.compared = False
        flow_row(first)
        flow_row(second)
        marked = sum(1 for r in replayed if r.cached)

    print(f"\nTotal {time.perf_counter() - started:.0f} s, temporary server start-up included.\n")
    print_table(
        rows,
        abatch,
        concurrency,
        latency,
        timed=TIMED_ROWS,
    )
    report_rows(rows, abatch, concurrency, latency, timed=TIMED_ROWS)
    print(
        "The runner rows are measured, not held to the targets: each call there is a task run "
        "in a pool thread or, on Dask, a trip to another process."
    )
    print(
        f"\nCache ({args.cache_prompts} unique prompts, cache on): 1st run {first.model_calls} "
        f"model calls; re-run {second.model_calls} model calls, {marked} of "
        f"{len(replayed)} results marked cached."
    )
    report(
        f"LLM cache: model calls on the cached re-run ({args.cache_prompts} prompts)",
        second.model_calls,
        first.model_calls,
        target="== 0 calls",
        on="ours",
        unit="calls",
    )
    failures: list[str] = []
    if first.model_calls != args.cache_prompts:
        failures.append(
            f"the first cached run made {first.model_calls} model calls, expected "
            f"{args.cache_prompts} (stale cache?)"
        )
    if second.model_calls:
        failures.append(f"the cached re-run made {second.model_calls} model calls, expected 0")
    if failures:
        print("ERROR: " + "; ".join(failures), file=sys.stderr)
        return 1
    print("Cached re-run made 0 model calls: MEETS")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except DeadlineExceeded as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception:
        traceback.print_exc()
        sys.exit(1)

"""Benchmark ``map_llm`` / ``amap_llm`` fan-out against LangChain's own ``abatch``.

What: a chat model that waits a fixed latency (``asyncio.sleep``, no CPU) and echoes the prompt
answers ``--calls`` prompts (default 500) at ``--concurrency`` calls in flight (default 25), in
one process and one invocation:

* **abatch**: ``model.abatch(prompts, config={"max_concurrency": C})``, no Prefect at all;
* **flow (map_llm)**: a sync Prefect flow calling ``map_llm(..., config={"cache": False})``:
  one ``llm-call`` task run per prompt;
* **flow (amap_llm)**: the same from an async flow with ``await amap_llm(...)``;
* **flow (limit_name)**: ``map_llm`` with ``limit_name`` set, so every call also takes a slot of
  a Prefect global concurrency limit through the API (the cross-worker path);
* **cache**: a flow fanning out ``--cache-prompts`` unique prompts with the cache on, run twice;
  the model's own thread-safe counter must show zero calls on the second run.

Why: the fan-out adds a task run (state changes, events, logs, usage tracking) around every
model call. With a remote model the latency dominates, so the orchestration should cost little:
the targets are a flow wall time of at most 1.15 x the ideal (calls x latency / concurrency)
and at most 1.1 x ``abatch`` on the same model. The flow rows are timed around the whole flow
call (flow-run creation included); the time spent inside the fan-out call is shown too.

Flows run against a temporary Prefect server (``prefect_test_harness``), or against the server
in ``PREFECT_API_URL`` when it is set. Results and cache records go to a temporary folder.

Exit status: 0 when everything ran and the cached re-run made no model call (whether or not
the timing targets are met: this is a measurement); 1 on an error, a wrong echo, a first cached
run that did not call the model for every prompt, any model call on the cached re-run, or when
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
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from prefect import flow
from pydantic import PrivateAttr

from flowkit_prefect.llm import LLMResult, amap_llm, map_llm

TARGET_VS_IDEAL = 1.15
TARGET_VS_ABATCH = 1.10
NO_CACHE_CONFIG: dict[str, Any] = {"cache": False}
CACHE_CONFIG: dict[str, Any] = {"cache": True}


class DeadlineExceeded(Exception):
    """Raised in the main thread by SIGALRM when ``--deadline`` has passed."""


# --------------------------------------------------------------------------- the model


class EchoChatModel(BaseChatModel):
    """Replies with the last message's text after ``latency`` seconds (async: no CPU held).

    ``model_calls`` counts every generation under a lock, independently of flowkit's code, so
    a cache hit (no call) is told apart from a call. No per-call history is kept, so the task
    parameters do not grow as the benchmark runs.
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
    """One timed fan-out of ``calls`` prompts."""

    name: str
    calls: int
    wall: float  # seconds, around the whole call (flow run included for flows)
    cpu: float  # process CPU seconds (all threads) over the same span
    inner: float | None = None  # seconds inside map_llm / amap_llm (flows only)
    model_calls: int = 0  # what the model's counter saw


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    """Yields [wall, cpu], filled in on exit."""
    out = [0.0, 0.0]
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield out
    finally:
        out[0], out[1] = time.perf_counter() - wall, time.process_time() - cpu


def make_prompts(count: int, tag: str) -> list[str]:
    """Distinct prompts, so that no result could come from an earlier run's cache."""
    return [f"Echo item {i} of batch {tag}" for i in range(count)]


def check_echo(name: str, prompts: Sequence[str], texts: Sequence[str]) -> None:
    if list(texts) != list(prompts):
        wrong = sum(1 for p, t in zip(prompts, texts, strict=False) if p != t)
        raise RuntimeError(
            f"{name}: {wrong + abs(len(prompts) - len(texts))} of {len(prompts)} replies "
            "are not the echo of their prompt"
        )


def run_abatch(model: EchoChatModel, prompts: list[str], concurrency: int) -> Timing:
    before = model.model_calls
    with stopwatch() as t:
        replies = asyncio.run(model.abatch(prompts, config={"max_concurrency": concurrency}))
    check_echo("abatch", prompts, [r.text for r in replies])
    return Timing("abatch", len(prompts), t[0], t[1], model_calls=model.model_calls - before)


def run_sync_flow(
    name: str,
    model: EchoChatModel,
    prompts: list[str],
    concurrency: int,
    config: dict[str, Any],
    limit_name: str | None = None,
) -> tuple[Timing, list[LLMResult]]:
    """A sync flow calling ``map_llm``; returns the timing and the results."""
    inner: list[float] = []

    @flow(name=f"bench-{name}", log_prints=False)
    def fanout() -> list[LLMResult]:
        start = time.perf_counter()
        results = map_llm(
            model,
            prompts,
            config=config,  # type: ignore[arg-type]
            max_concurrency=concurrency,
            limit_name=limit_name,
        )
        inner.append(time.perf_counter() - start)
        return results

    before = model.model_calls
    with stopwatch() as t:
        results = fanout()
    check_echo(name, prompts, [r.text for r in results])
    timing = Timing(name, len(prompts), t[0], t[1], inner[0], model.model_calls - before)
    return timing, results


def run_async_flow(
    name: str, model: EchoChatModel, prompts: list[str], concurrency: int
) -> Timing:
    """An async flow awaiting ``amap_llm``."""
    inner: list[float] = []

    @flow(name=f"bench-{name}", log_prints=False)
    async def fanout() -> list[str]:
        start = time.perf_counter()
        results = await amap_llm(
            model,
            prompts,
            config=NO_CACHE_CONFIG,  # type: ignore[arg-type]
            max_concurrency=concurrency,
        )
        inner.append(time.perf_counter() - start)
        return [r.text for r in results]

    before = model.model_calls
    with stopwatch() as t:
        texts = asyncio.run(fanout())  # type: ignore[arg-type]
    check_echo(name, prompts, texts)
    return Timing(name, len(prompts), t[0], t[1], inner[0], model.model_calls - before)


def delete_limits(prefix: str) -> None:
    """Remove the global concurrency limits a ``limit_name`` run created (matters only when
    the benchmark runs against a server of yours)."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for suffix in ("", "-rpm", "-tpm"):
            with contextlib.suppress(ObjectNotFound):
                client.delete_global_concurrency_limit_by_name(f"{prefix}{suffix}")


@contextlib.contextmanager
def prefect_backend() -> Iterator[str]:
    """The server in ``PREFECT_API_URL`` when set, otherwise a temporary one."""
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield f"{PREFECT_API_URL.value()} (temporary, prefect_test_harness)"


# --------------------------------------------------------------------------- report


def verdict(ratio: float, target: float) -> str:
    return "MEETS" if ratio <= target else "BELOW"


def print_table(rows: Sequence[Timing], ideal: float, abatch: float, concurrency: int) -> None:
    header = (
        f"{'variant':<20}{'calls':>6}{'conc':>6}{'ideal s':>9}{'abatch s':>10}{'wall s':>9}"
        f"{'inner s':>9}{'/ideal':>8}{'/abatch':>9}{'cpu ms/call':>13}"
        f"  vs ideal <= {TARGET_VS_IDEAL:.2f}  vs abatch <= {TARGET_VS_ABATCH:.2f}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        row_ideal = ideal * row.calls
        vs_ideal = row.wall / row_ideal
        vs_abatch = row.wall / abatch if row.name != "abatch" else 1.0
        inner = f"{row.inner:9.2f}" if row.inner is not None else f"{'-':>9}"
        targets = (
            f"  {verdict(vs_ideal, TARGET_VS_IDEAL):<19}"
            + (f"  {verdict(vs_abatch, TARGET_VS_ABATCH)}" if row.name != "abatch" else "  -")
        )
        print(
            f"{row.name:<20}{row.calls:>6}{concurrency:>6}{row_ideal:>9.2f}{abatch:>10.2f}"
            f"{row.wall:>9.2f}{inner}{vs_ideal:>8.3f}{vs_abatch:>9.3f}"
            f"{1000 * row.cpu / row.calls:>13.2f}{targets}"
        )


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=500, help="prompts per fan-out (500)")
    parser.add_argument("--concurrency", type=int, default=25, help="calls in flight (25)")
    parser.add_argument("--latency", type=float, default=0.5, help="model latency, s (0.5)")
    parser.add_argument(
        "--limit-calls",
        type=int,
        default=None,
        help="prompts for the limit_name row (default: --calls; 0 skips the row)",
    )
    parser.add_argument(
        "--cache-prompts", type=int, default=50, help="unique prompts for the cache check (50)"
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=480.0,
        help="stop with exit status 1 after this many seconds (480)",
    )
    args = parser.parse_args(argv)
    if args.limit_calls is None:
        args.limit_calls = args.calls
    if args.calls < 1 or args.concurrency < 1 or args.cache_prompts < 1 or args.limit_calls < 0:
        parser.error("--calls, --concurrency and --cache-prompts must be at least 1")
    if args.latency <= 0 or args.deadline <= 0:
        parser.error("--latency and --deadline must be positive")
    return args


def arm_deadline(seconds: float) -> Callable[[], None]:
    """SIGALRM raises ``DeadlineExceeded`` in the main thread (context managers unwind, so the
    temporary server stops); if that does not end the process within 30 s, a daemon timer
    exits hard. Returns a function that disarms both."""

    def on_alarm(signum: int, frame: Any) -> None:
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
    per_call_ideal = latency / concurrency  # ideal seconds per call at full concurrency
    model = EchoChatModel(latency=latency)
    tag = uuid.uuid4().hex[:8]
    print(
        f"Model: async echo, latency {latency:.3f} s; {calls} calls at concurrency "
        f"{concurrency}: ideal {calls * per_call_ideal:.2f} s; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )

    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    rows: list[Timing] = []
    with (
        tempfile.TemporaryDirectory(prefix="flowkit-bench-llm-") as tmp,
        temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: str(Path(tmp) / "results")}),
        prefect_backend() as api,
    ):
        print(f"Prefect API: {api}")

        # Warm-up, not timed: imports, API clients, the run-sync loop, first task runs.
        t0 = time.perf_counter()
        warm = make_prompts(concurrency, f"warm-{tag}")
        run_abatch(model, warm, concurrency)
        run_sync_flow("warm-up", model, warm, concurrency, NO_CACHE_CONFIG)
        print(f"Warm-up ({len(warm)} calls, abatch + flow): {time.perf_counter() - t0:.2f} s")

        abatch = run_abatch(model, make_prompts(calls, f"abatch-{tag}"), concurrency)
        rows.append(abatch)
        print(f"  abatch              {abatch.wall:7.2f} s")

        timing, _ = run_sync_flow(
            "flow map_llm", model, make_prompts(calls, f"sync-{tag}"), concurrency, NO_CACHE_CONFIG
        )
        rows.append(timing)
        print(f"  flow map_llm        {timing.wall:7.2f} s")

        timing = run_async_flow(
            "flow amap_llm", model, make_prompts(calls, f"async-{tag}"), concurrency
        )
        rows.append(timing)
        print(f"  flow amap_llm       {timing.wall:7.2f} s")

        if args.limit_calls:
            limit_name = f"bench-{tag}"
            try:
                timing, _ = run_sync_flow(
                    "flow limit_name",
                    model,
                    make_prompts(args.limit_calls, f"limit-{tag}"),
                    concurrency,
                    NO_CACHE_CONFIG,
                    limit_name=limit_name,
                )
            finally:
                delete_limits(f"flowkit-llm-{limit_name}")
            rows.append(timing)
            print(f"  flow limit_name     {timing.wall:7.2f} s")

        cache_prompts = make_prompts(args.cache_prompts, f"cache-{tag}")
        first, _ = run_sync_flow("cache 1st", model, cache_prompts, concurrency, CACHE_CONFIG)
        second, replayed = run_sync_flow(
            "cache re-run", model, cache_prompts, concurrency, CACHE_CONFIG
        )
        not_cached = sum(1 for r in replayed if not r.cached)
        print(
            f"  cache 1st run       {first.wall:7.2f} s  model calls {first.model_calls}\n"
            f"  cache re-run        {second.wall:7.2f} s  model calls {second.model_calls}"
        )

    print()
    print_table(rows, per_call_ideal, abatch.wall, concurrency)
    print()
    print(
        f"Cache ({args.cache_prompts} unique prompts, cache on): first run {first.wall:.2f} s, "
        f"{first.model_calls} model calls; re-run {second.wall:.2f} s, "
        f"{second.model_calls} model calls, {args.cache_prompts - not_cached} results "
        f"marked cached"
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
    print("Cached re-run: 0 model calls: MEETS")
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

"""``map_llm`` on the flow's task runner: the same answers and usage on the thread pool and on a
local multi-process Dask cluster, the cap held across processes, failures raised after the rest.
Only the provider is fake (``FakeChatModel``, whose journal file shows where and when each call
ran)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flowkit_prefect.exceptions import ConfigurationError, ModelOutputError
from flowkit_prefect.llm import amap_llm, map_llm, track_usage
from flowkit_prefect.retrieval.types import SkippedSource
from flowkit_prefect.testing import FakeChatModel

NO_CACHE = {"cache": False, "retries": 0}


def _upper(messages: Any, **_: Any) -> str:
    return "ANSWER " + messages[-1].text.upper()


def _prompts(count: int) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"question {i} {tag}" for i in range(count)]


def _journal(path: Path) -> list[tuple[float, float, int, str]]:
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(float(start), float(end), int(pid), thread) for start, end, pid, thread in rows]


def _peak(calls: list[tuple[float, float, int, str]]) -> int:
    edges = sorted([(c[0], 1) for c in calls] + [(c[1], -1) for c in calls])
    peak = running = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def _task_run_names(flow_run_id: str) -> list[str]:
    async def read() -> list[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(flow_run_id)]))
            )
            return [run.name for run in runs]

    return asyncio.run(read())


def _usage_rows() -> list[dict[str, Any]]:
    usage = Artifact.get("flowkit-llm-usage")
    assert usage is not None
    return json.loads(usage.data) if isinstance(usage.data, str) else usage.data


def test_thread_pool_submit_matches_the_event_loop(harness: str, tmp_path: Path) -> None:
    """Forced onto the default thread pool, each call's ``llm-call`` task run runs in a pool
    thread of its own; answers and the usage table equal the in-loop fan-out's."""
    from prefect.runtime import flow_run

    prompts = _prompts(6)
    inline_log, spread_log = tmp_path / "inline.log", tmp_path / "spread.log"

    @flow
    def run() -> tuple[list[str], list[str], str]:
        with track_usage():
            inline = map_llm(
                FakeChatModel(respond=_upper, journal=str(inline_log)), prompts, config=NO_CACHE
            )
            spread = map_llm(
                FakeChatModel(respond=_upper, delay_seconds=0.2, journal=str(spread_log)),
                prompts,
                config=NO_CACHE,
                on_task_runner=True,
            )
        return [r.text for r in inline], [r.text for r in spread], flow_run.id

    inline, spread, run_id = run()
    assert spread == inline == ["ANSWER " + p.upper() for p in prompts]
    inline_threads = {c[3] for c in _journal(inline_log)}
    spread_calls = _journal(spread_log)
    assert len(inline_threads) == 1 and len(spread_calls) == 6
    spread_threads = {c[3] for c in spread_calls}
    assert not spread_threads & inline_threads
    assert _peak(spread_calls) > 1
    names = _task_run_names(run_id)
    assert sum(name.startswith("llm-call") for name in names) == 12
    rows = _usage_rows()
    assert sum(row["calls"] for row in rows) == 12


def test_on_task_runner_needs_a_flow_run() -> None:
    with pytest.raises(ConfigurationError, match="inside a @flow"):
        map_llm(FakeChatModel(), ["hello"], on_task_runner=True)


@pytest.mark.dask
def test_dask_fan_out_gives_the_same_answers_across_processes(harness: str, tmp_path: Path) -> None:
    """On a 2-process Dask cluster the calls run in the workers (other PIDs), at most
    ``max_concurrency`` at once, with the same answers and usage as the event loop; a failing
    prompt is raised after the others finished."""
    pytest.importorskip("prefect_dask")
    from prefect_dask.task_runners import DaskTaskRunner

    prompts = _prompts(12)
    journal = tmp_path / "dask.log"
    model = FakeChatModel(respond=_upper, delay_seconds=0.3, journal=str(journal))
    local = FakeChatModel(respond=_upper)
    runner = DaskTaskRunner(
        cluster_kwargs={
            "n_workers": 2,
            "threads_per_worker": 2,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": None,
        }
    )

    def refuse(messages: Any, **_: Any) -> str:
        if "poison" in messages[-1].text:
            return "not json"  # structured output fails: ModelOutputError
        return '{"source": "s", "reason": "r"}'

    @flow(task_runner=runner)
    async def run() -> dict[str, Any]:
        with track_usage():
            spread = await amap_llm(
                model,
                prompts,
                config=NO_CACHE,
                max_concurrency=3,
                limit_name=f"dask-{uuid.uuid4().hex[:6]}",
            )
            inline = await amap_llm(local, prompts, config=NO_CACHE, on_task_runner=False)
        failing = FakeChatModel(respond=refuse)
        failure: str | None = None
        try:
            await amap_llm(
                failing,
                ["fine 1", "poison 2", "fine 3"],
                config={**NO_CACHE, "structured_repairs": 0},
                output_type=SkippedSource,  # a package model: workers import it
            )
        except ModelOutputError as exc:
            failure = str(exc)
        return {
            "spread": [r.text for r in spread],
            "inline": [r.text for r in inline],
            "failure": failure,
        }

    result = asyncio.run(run())
    assert result["spread"] == result["inline"] == ["ANSWER " + p.upper() for p in prompts]
    assert result["failure"] and "no valid structured output" in result["failure"]
    calls = _journal(journal)
    assert len(calls) == 12
    pids = {c[2] for c in calls}
    assert os.getpid() not in pids and len(pids) == 2, pids
    assert 2 <= _peak(calls) <= 3
    rows = _usage_rows()
    assert sum(row["calls"] for row in rows) == 24
    assert sum(row["input_tokens"] for row in rows) == 2 * sum(len(p.split()) for p in prompts)


def test_runner_calls_time_out_and_fall_back(harness: str) -> None:
    """On the task runner a call that does not answer in time is given up with our message,
    retried as a transient fault, then the fallback model answers."""
    slow = FakeChatModel(respond=_upper, delay_seconds=3.0, model_name="slow")
    spare = FakeChatModel(respond=_upper, model_name="spare")
    prompts = _prompts(2)

    @flow
    def run() -> list[str]:
        results = map_llm(
            [slow, spare],
            prompts,
            config={
                "cache": False,
                "retries": 1,
                "retry_delay_seconds": 0.05,
                "timeout_seconds": 0.5,
            },
            on_task_runner=True,
        )
        return [f"{r.model}: {r.text}" for r in results]

    started = time.perf_counter()
    assert run() == [f"spare: ANSWER {p.upper()}" for p in prompts]
    assert time.perf_counter() - started < 10

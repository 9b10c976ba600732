"""The task-runner side of a fan-out: each prompt's ``llm-call`` task run is submitted to the
flow's task runner (a Dask cluster, a process pool, or threads when asked), so the calls spread
over its workers.

The worker runs the task run itself (the model call, its retries, timeout, cache lookup and
structured repairs); this process keeps the rest of the one call path (budget, usage, events,
fallback chain), the fan-out's cap (it holds the slots and never has more calls in flight than
slots) and the rate limits, taken before each submit. So the run's usage table and answers are
the same on every runner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from langchain_core.messages import BaseMessage
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext, TaskRunContext
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from flowkit_prefect.exceptions import ConfigurationError
from flowkit_prefect.llm._config import LLMTaskConfig
from flowkit_prefect.llm._gate import take_rate_limits, use_gate
from flowkit_prefect.llm._tasks import ChatModelSource, LLMResult, call_through_chain

Prompt = str | Sequence[BaseMessage]


def runner_spreads_calls() -> bool:
    """Whether a fan-out started here goes to the flow's task runner by default: in a flow run
    (not inside a task) whose runner is not the in-process thread pool.

    On the thread pool the calls would share this process anyway, and they are cheaper on the
    flow's event loop than one thread and event loop per call (see ``bench_llm_fanout.py``).
    """
    ctx = FlowRunContext.get()
    if ctx is None or TaskRunContext.get() is not None:
        return False
    return not isinstance(ctx.task_runner, ThreadPoolTaskRunner)


def require_flow_run() -> None:
    """``on_task_runner=True`` needs a flow run: the task runner is the flow's."""
    if FlowRunContext.get() is None:
        raise ConfigurationError(
            "map_llm(on_task_runner=True) runs the calls on the flow's task runner, so it must "
            "be called inside a @flow; outside one, leave on_task_runner unset."
        )


class RunnerCalls:
    """Submits fan-out calls to the flow's task runner and awaits them without blocking the
    event loop (one waiting thread per call in flight)."""

    def __init__(
        self,
        model: ChatModelSource,
        output_type: type[BaseModel] | None,
        config: LLMTaskConfig | None,
        in_flight: int,
        requests_limit: str | None,
        tokens_limit: str | None,
    ) -> None:
        self._model = model
        self._output_type = output_type
        self._config = config
        self._requests_limit = requests_limit
        self._tokens_limit = tokens_limit
        self._waiters = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="map-llm")

    async def run(self, prompt: Prompt) -> LLMResult:
        """One prompt through the call path, its task runs on the task runner."""
        await take_rate_limits(self._requests_limit, self._tokens_limit, prompt)
        return await call_through_chain(
            self._model,
            prompt,
            output_type=self._output_type,
            config=self._config,
            submit=self._submit,
        )

    async def _submit(self, runner: Any, arguments: tuple[Any, ...]) -> State[Any]:
        with use_gate(None):  # the copied context must not carry an event-loop gate along
            future = runner.submit(*arguments)
        await asyncio.get_running_loop().run_in_executor(self._waiters, future.wait)
        return future.state

    def close(self) -> None:
        self._waiters.shutdown(wait=False, cancel_futures=True)

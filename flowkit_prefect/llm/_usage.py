"""Token usage and cost per flow run: a table artifact, small events, and an optional budget."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from flowkit_prefect.exceptions import BudgetExceededError

USAGE_ARTIFACT_KEY = "flowkit-llm-usage"


class Budget(BaseModel):
    """Limits for one run; a call is refused once a limit is reached."""

    max_tokens: int | None = Field(default=None, ge=1, description="Input + output tokens.")
    max_cost: float | None = Field(default=None, gt=0, description="In the blocks' currency.")


class CallUsage(BaseModel):
    """What one model call used."""

    model: str
    task: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    cached: bool = False


@dataclass
class UsageTracker:
    """Collects the calls of one run; thread-safe, so concurrent calls can record."""

    budget: Budget | None = None
    calls: list[CallUsage] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def tokens(self) -> int:
        return sum(c.input_tokens + c.output_tokens for c in self.calls)

    @property
    def cost(self) -> float:
        return sum(c.cost for c in self.calls)

    def check(self) -> None:
        """Raise ``BudgetExceededError`` when the budget is spent."""
        if self.budget is None:
            return
        if self.budget.max_tokens is not None and self.tokens >= self.budget.max_tokens:
            raise BudgetExceededError(
                f"Token budget spent: {self.tokens} of {self.budget.max_tokens} tokens used; "
                "no further model call is made. Raise Budget.max_tokens to go on."
            )
        if self.budget.max_cost is not None and self.cost >= self.budget.max_cost:
            raise BudgetExceededError(
                f"Cost budget spent: {self.cost:.4f} of {self.budget.max_cost:.4f}; no further "
                "model call is made. Raise Budget.max_cost to go on."
            )

    def record(self, usage: CallUsage) -> None:
        with self._lock:
            self.calls.append(usage)

    def table(self) -> list[dict[str, Any]]:
        """One row per (model, task): calls, cached calls, tokens and cost."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for call in self.calls:
            row = rows.setdefault(
                (call.model, call.task),
                {
                    "model": call.model,
                    "task": call.task,
                    "calls": 0,
                    "cached": 0,
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "cost": 0.0,
                },
            )
            row["calls"] += 1
            row["cached"] += int(call.cached)
            row["input_tokens"] += call.input_tokens
            row["output_tokens"] += call.output_tokens
            row["cost"] = round(row["cost"] + call.cost, 6)
        return list(rows.values())


_trackers: dict[str, UsageTracker] = {}
_trackers_lock = threading.Lock()


def _run_key() -> str:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else "no-flow-run"


def current_tracker() -> UsageTracker:
    """The tracker of the current flow run (created on first use)."""
    with _trackers_lock:
        return _trackers.setdefault(_run_key(), UsageTracker())


@contextlib.contextmanager
def track_usage(budget: Budget | None = None, publish: bool = True) -> Iterator[UsageTracker]:
    """Track LLM usage inside a flow run; on exit publish the usage table artifact.

    Example:
        ```python
        @flow
        def summarize(texts: list[str]):
            with track_usage(Budget(max_cost=0.50)):
                return [invoke_llm(model, f"Summarize: {t}").text for t in texts]
        ```
    """
    tracker = current_tracker()
    tracker.budget = budget
    try:
        yield tracker
    finally:
        if publish:
            publish_usage(tracker)


def publish_usage(tracker: UsageTracker | None = None) -> None:
    """Create the ``flowkit-llm-usage`` table artifact for this run and, in a deployment, the
    ``flowkit-llm-usage-<flow>-<deployment>`` sum over its recent runs."""
    from prefect.artifacts import create_table_artifact

    tracker = tracker or current_tracker()
    if not tracker.calls:
        return
    create_table_artifact(
        tracker.table(),
        key=USAGE_ARTIFACT_KEY,
        description=(
            f"LLM usage: {len(tracker.calls)} calls, {tracker.tokens} tokens, "
            f"cost {tracker.cost:.4f}"
        ),
        _sync=True,  # pyright: ignore[reportCallIssue]  # async_dispatch: also in async flows
    )
    from flowkit_prefect.llm._deployment_usage import publish_deployment_usage

    try:
        publish_deployment_usage(USAGE_ARTIFACT_KEY)
    except Exception as exc:  # a summary of past runs must never fail this one
        from prefect.logging import get_logger

        get_logger("flowkit.llm").warning("Deployment usage summary not published: %s", exc)


def emit_call_event(usage: CallUsage, flow_run_id: str | None) -> None:
    """A ``flowkit.llm.call`` event: counts and ids only, never prompts or replies."""
    from prefect.events import emit_event

    related = (
        [
            {
                "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                "prefect.resource.role": "flow-run",
            }
        ]
        if flow_run_id and flow_run_id != "no-flow-run"
        else None
    )
    emit_event(
        "flowkit.llm.cached" if usage.cached else "flowkit.llm.call",
        resource={"prefect.resource.id": f"flowkit.llm.{usage.model}", "flowkit.task": usage.task},
        related=related,
        payload={
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cost": usage.cost,
        },
    )

"""Plans: steps with an executor type and dependencies, checked before anything runs."""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

from pydantic import BaseModel, Field

from flowkit_prefect.exceptions import PlanError

StepStatus = Literal["not_started", "in_progress", "completed", "failed", "blocked"]


class PlanStep(BaseModel):
    """One step: what to do, which executor does it, what it waits for, and how it went."""

    id: str
    description: str
    executor: str = "llm"
    depends_on: list[str] = Field(default_factory=list)
    status: StepStatus = "not_started"
    output: str | None = None
    error: str | None = None
    attempts: int = 0


class Plan(BaseModel):
    """A goal and the steps that reach it."""

    goal: str
    steps: list[PlanStep]

    def step(self, step_id: str) -> PlanStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def check(self, executors: set[str], max_steps: int | None = None) -> None:
        """Raise ``PlanError`` saying exactly what is wrong with the plan, if anything."""
        if not self.steps:
            raise PlanError("The plan has no steps.")
        if max_steps is not None and len(self.steps) > max_steps:
            raise PlanError(f"The plan has {len(self.steps)} steps; at most {max_steps} allowed.")
        ids = [s.id for s in self.steps]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise PlanError(f"Step ids must be unique; repeated: {duplicates}.")
        for step in self.steps:
            if not step.description.strip():
                raise PlanError(f"Step {step.id} has no description.")
            if step.executor not in executors:
                raise PlanError(
                    f"Step {step.id} uses unknown executor {step.executor!r}; "
                    f"available: {sorted(executors)}."
                )
            unknown = [d for d in step.depends_on if d not in ids]
            if unknown:
                raise PlanError(f"Step {step.id} depends on unknown step(s) {unknown}.")
            if step.id in step.depends_on:
                raise PlanError(f"Step {step.id} depends on itself.")
        order = self.waves()
        if sum(len(w) for w in order) != len(self.steps):
            placed = {i for wave in order for i in wave}
            raise PlanError(
                f"The plan's dependencies form a cycle among steps {sorted(set(ids) - placed)}."
            )

    def waves(self) -> list[list[str]]:
        """Steps grouped so that each group depends only on earlier groups (Kahn's algorithm)."""
        indegree = {s.id: len(set(s.depends_on)) for s in self.steps}
        dependents: dict[str, list[str]] = {s.id: [] for s in self.steps}
        for step in self.steps:
            for dep in set(step.depends_on):
                if dep in dependents:
                    dependents[dep].append(step.id)
        ready = deque(s.id for s in self.steps if indegree[s.id] == 0)
        waves: list[list[str]] = []
        while ready:
            wave = list(ready)
            ready.clear()
            waves.append(wave)
            for done in wave:
                for nxt in dependents[done]:
                    indegree[nxt] -= 1
                    if indegree[nxt] == 0:
                        ready.append(nxt)
        return waves

    def table(self) -> list[dict[str, Any]]:
        """One row per step, for the plan artifact."""
        return [
            {
                "step": s.id,
                "status": s.status,
                "executor": s.executor,
                "depends_on": ", ".join(s.depends_on),
                "description": s.description,
                "attempts": s.attempts,
                "result": (s.output or s.error or "")[:300],
            }
            for s in self.steps
        ]

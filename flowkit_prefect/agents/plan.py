"""Plans: steps with an executor type and dependencies, checked before anything runs."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter
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
    flags: list[str] = Field(
        default_factory=list, description="Why the output looks like instructions to a model."
    )


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
        self.waves()  # raises PlanError naming the cycle, if there is one

    def waves(self) -> list[list[str]]:
        """Steps grouped so that each group depends only on earlier groups, in plan order within
        a group (``graphlib.TopologicalSorter``); a cycle is a ``PlanError`` naming its steps."""
        position = {s.id: i for i, s in enumerate(self.steps)}
        sorter: TopologicalSorter[str] = TopologicalSorter(
            {s.id: [d for d in dict.fromkeys(s.depends_on) if d in position] for s in self.steps}
        )
        try:
            sorter.prepare()
        except CycleError as exc:
            cycle = list(dict.fromkeys(exc.args[1]))
            raise PlanError(
                f"The plan's dependencies form a cycle among steps {sorted(cycle)}."
            ) from exc
        waves: list[list[str]] = []
        while sorter.is_active():
            wave = sorted(sorter.get_ready(), key=position.__getitem__)
            waves.append(wave)
            sorter.done(*wave)
        return waves

    def mermaid(self) -> str:
        """The plan as a Mermaid flowchart: one box per step, coloured by its status, an arrow
        from each dependency (Prefect's UI renders ```mermaid blocks in markdown artifacts)."""
        lines = ["flowchart TD"]
        for step in self.steps:
            label = _mermaid_text(f"{step.id}: {step.description}")
            lines.append(
                f'    {_node(step.id)}["{label}<br/><i>{step.status}</i>"]:::{step.status}'
            )
        for step in self.steps:
            lines.extend(f"    {_node(dep)} --> {_node(step.id)}" for dep in step.depends_on)
        lines.extend(f"    classDef {status} {style}" for status, style in _STATUS_STYLE.items())
        return "\n".join(lines)

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
                "flags": "; ".join(s.flags),
            }
            for s in self.steps
        ]


_STATUS_STYLE = {
    "not_started": "fill:#f2f4f7,stroke:#98a2b3,color:#344054",
    "in_progress": "fill:#fef0c7,stroke:#f79009,color:#7a2e0e",
    "completed": "fill:#d1fadf,stroke:#12b76a,color:#054f31",
    "failed": "fill:#fee4e2,stroke:#f04438,color:#7a271a",
    "blocked": "fill:#eaecf0,stroke:#475467,color:#101828,stroke-dasharray:4 3",
}


def _node(step_id: str) -> str:
    """A Mermaid node id for a step id (letters, digits and underscores only)."""
    return "s_" + "".join(c if c.isalnum() else "_" for c in step_id)


def _mermaid_text(text: str, limit: int = 60) -> str:
    """A step's label, safe inside a quoted Mermaid label: one line, no quotes or markup."""
    flat = " ".join(text.split())
    flat = flat[: limit - 1] + "…" if len(flat) > limit else flat
    for char, entity in (("&", "#amp;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        flat = flat.replace(char, entity)
    return flat.replace("`", "'")

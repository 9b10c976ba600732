"""The ``plan-and-execute`` template (PlanningFlow): plan, run steps in order, summarize."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from flowkit_prefect._blockref import resolve_block
from flowkit_prefect.agents.executors import ExecutorRegistry, llm_executor, rag_executor
from flowkit_prefect.agents.planning import PlanResult, run_plan
from flowkit_prefect.blocks.chat_models import ChatModelBlock
from flowkit_prefect.blocks.embedders import EmbedderBlock
from flowkit_prefect.blocks.qdrant import QdrantStore
from flowkit_prefect.flows._lineage import artifact_asset, collection_asset, materialize
from flowkit_prefect.flows._params import (
    DEFAULT_CHAT_MODEL,
    DEFAULT_EMBEDDER,
    DEFAULT_QDRANT_STORE,
    BlockRef,
)
from flowkit_prefect.llm import track_usage


@flow(name="plan-and-execute", log_prints=True, persist_result=True)
def plan_and_execute(
    goal: Annotated[str, Field(min_length=1)],
    planner: BlockRef = DEFAULT_CHAT_MODEL,
    executor_model: BlockRef = DEFAULT_CHAT_MODEL,
    collection: str | None = None,
    qdrant_store: BlockRef = DEFAULT_QDRANT_STORE,
    embedder: BlockRef = DEFAULT_EMBEDDER,
    max_steps: Annotated[int, Field(ge=1, le=20)] = 5,
    step_retries: Annotated[int, Field(ge=0, le=5)] = 1,
    plan_repairs: Annotated[int, Field(ge=0, le=5)] = 2,
    approve_plan: bool = False,
) -> PlanResult:
    """Plan the goal with a model, run the steps as tasks, and always close with a summary.

    Args:
        goal: What the plan must achieve.
        planner: Chat model block that writes the plan, as '<block-type-slug>/<name>'.
        executor_model: Chat model block that runs 'llm' and 'rag' steps.
        collection: A Qdrant collection; when set, steps may use the 'rag' executor on it.
        qdrant_store: Qdrant store block holding the collection.
        embedder: Embedder block the collection was built with.
        max_steps: Most steps a plan may have.
        step_retries: Retries of a failing step before it is marked failed.
        plan_repairs: Times an invalid plan goes back to the planner with its error.
        approve_plan: Pause for a person to approve or edit the plan in the UI before it runs.
    """
    store: QdrantStore | None = None
    planner_block = resolve_block(planner, ChatModelBlock)
    executor_block = resolve_block(executor_model, ChatModelBlock)
    registry = ExecutorRegistry()
    registry.register("llm", llm_executor(executor_block), "answer or write text with a model")
    if collection:
        store = resolve_block(qdrant_store, QdrantStore)
        embeddings = resolve_block(embedder, EmbedderBlock).get_embeddings()
        registry.register(
            "rag",
            rag_executor(
                executor_block.get_chat_model(),
                store,
                embeddings,
                collection,
            ),
            f"look facts up in the document collection '{collection}', with citations",
        )
    with track_usage():  # the flowkit-llm-usage table: planner, executors and summary
        result = run_plan(
            planner_block,
            goal,
            registry,
            summarizer=executor_block,
            max_steps=max_steps,
            step_retries=step_retries,
            plan_repairs=plan_repairs,
            approve_plan=approve_plan,
        )
    summary = artifact_asset("plan-summary", "Summaries of plan-and-execute runs.")
    metadata = {
        "steps": len(result.plan.steps),
        "completed": result.completed,
        "failed": result.failed,
        "blocked": result.blocked,
    }
    read = [collection_asset(store, collection)] if store and collection else []
    materialize([summary], read, {summary.key: metadata}, "record-plan")
    print(result.summary)
    return result

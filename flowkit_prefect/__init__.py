"""flowkit-prefect: reusable Prefect tasks and flow templates for LLM agents, retrieval and
data validation. Blocks hold configuration, tasks do one job each, flows compose them.

The public names load lazily (PEP 562, as in ``prefect/__init__.py``): ``import flowkit_prefect``
costs almost nothing, and a name's module (with pandas, Great Expectations, qdrant-client or
llama.cpp behind it) is imported the first time the name is used. Prefect loads this package's
blocks through the ``prefect.collections`` entry point (``flowkit_prefect.blocks``), which stays
light too.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("flowkit-prefect")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from flowkit_prefect.agents.executors import (
        ExecutorRegistry,
        StepContext,
    )
    from flowkit_prefect.agents.plan import (
        Plan,
        PlanStep,
    )
    from flowkit_prefect.agents.planning import (
        PlanResult,
        run_plan,
    )
    from flowkit_prefect.agents.tool_agent import (
        AgentResult,
        ToolApproval,
        run_tool_agent,
    )
    from flowkit_prefect.blocks.chat_models import (
        ChatModelBlock,
        LocalChatModel,
        OpenAIChatModel,
    )
    from flowkit_prefect.blocks.embedders import (
        EmbedderBlock,
        LocalEmbedder,
        OpenAIEmbedder,
    )
    from flowkit_prefect.blocks.qdrant import (
        QdrantStore,
    )
    from flowkit_prefect.blocks.sandboxes import (
        CodeSandbox,
        DockerSandbox,
        SubprocessSandbox,
    )
    from flowkit_prefect.blocks.validation_suite import (
        ValidationSuite,
    )
    from flowkit_prefect.codegen import (
        CodeGenOptions,
        CodeGenResult,
        CodeProblem,
        SandboxReport,
        TestCase,
        generate_code,
    )
    from flowkit_prefect.exceptions import (
        BudgetExceededError,
        CollectionDimensionError,
        ConfigurationError,
        DataAnomalyError,
        DataReadError,
        ExpectationRunError,
        FlowkitError,
        MissingDependencyError,
        ModelOutputError,
        PlanError,
        SandboxError,
        SchemaDriftError,
        SourceNotFoundError,
        StoreBusyError,
        StoreUnavailableError,
        SuiteDraftError,
        SuiteError,
        ValidationFailedError,
    )
    from flowkit_prefect.flows.code_generation import (
        code_generation,
    )
    from flowkit_prefect.flows.plan_and_execute import (
        plan_and_execute,
    )
    from flowkit_prefect.flows.rag_answer import (
        rag_answer,
    )
    from flowkit_prefect.flows.rag_ingest import (
        rag_ingest,
    )
    from flowkit_prefect.flows.validated_pipeline import (
        validated_pipeline,
    )
    from flowkit_prefect.flows.validation_alert import (
        validation_alert,
    )
    from flowkit_prefect.llm import (
        DEFAULT_LLM_TASK_CONFIG,
        Budget,
        ChatModelSource,
        LLMCallCachePolicy,
        LLMResult,
        LLMTaskConfig,
        ainvoke_llm,
        amap_llm,
        invoke_llm,
        map_llm,
        publish_usage,
        track_usage,
    )
    from flowkit_prefect.retrieval.answer import (
        answer_question,
    )
    from flowkit_prefect.retrieval.chunking import (
        ChunkingOptions,
    )
    from flowkit_prefect.retrieval.tasks import (
        UpsertPlan,
        chunk_documents,
        delete_stale_chunks,
        embed_and_upsert,
        load_documents,
        prepare_upserts,
        search_chunks,
    )
    from flowkit_prefect.retrieval.types import (
        Chunk,
        Citation,
        IngestRecord,
        IngestSummary,
        LoadResult,
        RagAnswer,
        SearchHit,
        SkippedSource,
        SourceDocument,
        SourceReport,
    )
    from flowkit_prefect.settings import (
        FlowkitSettings,
        get_settings,
    )
    from flowkit_prefect.validation import (
        CheckpointResult,
        MonitorConfig,
        MonitorResult,
        SuiteDraft,
        draft_suite,
        validate_dataframe,
        validate_file,
    )

# public name -> the module that defines it (its one home)
_public_api: dict[str, str] = {
    "AgentResult": "flowkit_prefect.agents.tool_agent",
    "Budget": "flowkit_prefect.llm",
    "BudgetExceededError": "flowkit_prefect.exceptions",
    "ChatModelBlock": "flowkit_prefect.blocks.chat_models",
    "ChatModelSource": "flowkit_prefect.llm",
    "CheckpointResult": "flowkit_prefect.validation",
    "Chunk": "flowkit_prefect.retrieval.types",
    "ChunkingOptions": "flowkit_prefect.retrieval.chunking",
    "Citation": "flowkit_prefect.retrieval.types",
    "CodeGenOptions": "flowkit_prefect.codegen",
    "CodeGenResult": "flowkit_prefect.codegen",
    "CodeProblem": "flowkit_prefect.codegen",
    "CodeSandbox": "flowkit_prefect.blocks.sandboxes",
    "CollectionDimensionError": "flowkit_prefect.exceptions",
    "ConfigurationError": "flowkit_prefect.exceptions",
    "DEFAULT_LLM_TASK_CONFIG": "flowkit_prefect.llm",
    "DataReadError": "flowkit_prefect.exceptions",
    "DockerSandbox": "flowkit_prefect.blocks.sandboxes",
    "EmbedderBlock": "flowkit_prefect.blocks.embedders",
    "ExecutorRegistry": "flowkit_prefect.agents.executors",
    "ExpectationRunError": "flowkit_prefect.exceptions",
    "DataAnomalyError": "flowkit_prefect.exceptions",
    "MonitorConfig": "flowkit_prefect.validation",
    "MonitorResult": "flowkit_prefect.validation",
    "FlowkitError": "flowkit_prefect.exceptions",
    "FlowkitSettings": "flowkit_prefect.settings",
    "IngestRecord": "flowkit_prefect.retrieval.types",
    "IngestSummary": "flowkit_prefect.retrieval.types",
    "LLMCallCachePolicy": "flowkit_prefect.llm",
    "LLMResult": "flowkit_prefect.llm",
    "LLMTaskConfig": "flowkit_prefect.llm",
    "LoadResult": "flowkit_prefect.retrieval.types",
    "LocalChatModel": "flowkit_prefect.blocks.chat_models",
    "LocalEmbedder": "flowkit_prefect.blocks.embedders",
    "MissingDependencyError": "flowkit_prefect.exceptions",
    "ModelOutputError": "flowkit_prefect.exceptions",
    "OpenAIChatModel": "flowkit_prefect.blocks.chat_models",
    "OpenAIEmbedder": "flowkit_prefect.blocks.embedders",
    "Plan": "flowkit_prefect.agents.plan",
    "PlanError": "flowkit_prefect.exceptions",
    "PlanResult": "flowkit_prefect.agents.planning",
    "PlanStep": "flowkit_prefect.agents.plan",
    "QdrantStore": "flowkit_prefect.blocks.qdrant",
    "RagAnswer": "flowkit_prefect.retrieval.types",
    "SandboxError": "flowkit_prefect.exceptions",
    "SandboxReport": "flowkit_prefect.codegen",
    "SchemaDriftError": "flowkit_prefect.exceptions",
    "SearchHit": "flowkit_prefect.retrieval.types",
    "SkippedSource": "flowkit_prefect.retrieval.types",
    "SourceDocument": "flowkit_prefect.retrieval.types",
    "SourceNotFoundError": "flowkit_prefect.exceptions",
    "SourceReport": "flowkit_prefect.retrieval.types",
    "StepContext": "flowkit_prefect.agents.executors",
    "StoreBusyError": "flowkit_prefect.exceptions",
    "StoreUnavailableError": "flowkit_prefect.exceptions",
    "SubprocessSandbox": "flowkit_prefect.blocks.sandboxes",
    "SuiteDraft": "flowkit_prefect.validation",
    "SuiteDraftError": "flowkit_prefect.exceptions",
    "SuiteError": "flowkit_prefect.exceptions",
    "TestCase": "flowkit_prefect.codegen",
    "ToolApproval": "flowkit_prefect.agents.tool_agent",
    "UpsertPlan": "flowkit_prefect.retrieval.tasks",
    "ValidationFailedError": "flowkit_prefect.exceptions",
    "ValidationSuite": "flowkit_prefect.blocks.validation_suite",
    "ainvoke_llm": "flowkit_prefect.llm",
    "amap_llm": "flowkit_prefect.llm",
    "answer_question": "flowkit_prefect.retrieval.answer",
    "chunk_documents": "flowkit_prefect.retrieval.tasks",
    "code_generation": "flowkit_prefect.flows.code_generation",
    "delete_stale_chunks": "flowkit_prefect.retrieval.tasks",
    "draft_suite": "flowkit_prefect.validation",
    "embed_and_upsert": "flowkit_prefect.retrieval.tasks",
    "generate_code": "flowkit_prefect.codegen",
    "get_settings": "flowkit_prefect.settings",
    "invoke_llm": "flowkit_prefect.llm",
    "load_documents": "flowkit_prefect.retrieval.tasks",
    "map_llm": "flowkit_prefect.llm",
    "plan_and_execute": "flowkit_prefect.flows.plan_and_execute",
    "prepare_upserts": "flowkit_prefect.retrieval.tasks",
    "publish_usage": "flowkit_prefect.llm",
    "rag_answer": "flowkit_prefect.flows.rag_answer",
    "rag_ingest": "flowkit_prefect.flows.rag_ingest",
    "run_plan": "flowkit_prefect.agents.planning",
    "run_tool_agent": "flowkit_prefect.agents.tool_agent",
    "search_chunks": "flowkit_prefect.retrieval.tasks",
    "track_usage": "flowkit_prefect.llm",
    "validate_dataframe": "flowkit_prefect.validation",
    "validate_file": "flowkit_prefect.validation",
    "validated_pipeline": "flowkit_prefect.flows.validated_pipeline",
    "validation_alert": "flowkit_prefect.flows.validation_alert",
}

__all__ = [
    "DEFAULT_LLM_TASK_CONFIG",
    "AgentResult",
    "Budget",
    "BudgetExceededError",
    "ChatModelBlock",
    "ChatModelSource",
    "CheckpointResult",
    "Chunk",
    "ChunkingOptions",
    "Citation",
    "CodeGenOptions",
    "CodeGenResult",
    "CodeProblem",
    "CodeSandbox",
    "CollectionDimensionError",
    "ConfigurationError",
    "DataAnomalyError",
    "DataReadError",
    "DockerSandbox",
    "EmbedderBlock",
    "ExecutorRegistry",
    "ExpectationRunError",
    "FlowkitError",
    "FlowkitSettings",
    "IngestRecord",
    "IngestSummary",
    "LLMCallCachePolicy",
    "LLMResult",
    "LLMTaskConfig",
    "LoadResult",
    "LocalChatModel",
    "LocalEmbedder",
    "MissingDependencyError",
    "ModelOutputError",
    "MonitorConfig",
    "MonitorResult",
    "OpenAIChatModel",
    "OpenAIEmbedder",
    "Plan",
    "PlanError",
    "PlanResult",
    "PlanStep",
    "QdrantStore",
    "RagAnswer",
    "SandboxError",
    "SandboxReport",
    "SchemaDriftError",
    "SearchHit",
    "SkippedSource",
    "SourceDocument",
    "SourceNotFoundError",
    "SourceReport",
    "StepContext",
    "StoreBusyError",
    "StoreUnavailableError",
    "SubprocessSandbox",
    "SuiteDraft",
    "SuiteDraftError",
    "SuiteError",
    "TestCase",
    "ToolApproval",
    "UpsertPlan",
    "ValidationFailedError",
    "ValidationSuite",
    "ainvoke_llm",
    "amap_llm",
    "answer_question",
    "chunk_documents",
    "code_generation",
    "delete_stale_chunks",
    "draft_suite",
    "embed_and_upsert",
    "generate_code",
    "get_settings",
    "invoke_llm",
    "load_documents",
    "map_llm",
    "plan_and_execute",
    "prepare_upserts",
    "publish_usage",
    "rag_answer",
    "rag_ingest",
    "run_plan",
    "run_tool_agent",
    "search_chunks",
    "track_usage",
    "validate_dataframe",
    "validate_file",
    "validated_pipeline",
    "validation_alert",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _public_api.get(name)
    if module is None:
        raise AttributeError(f"module 'flowkit_prefect' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

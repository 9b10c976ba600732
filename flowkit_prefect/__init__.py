"""flowkit-prefect: reusable Prefect tasks and flow templates for LLM agents, retrieval and
data validation. Blocks hold configuration, tasks do one job each, flows compose them."""

from flowkit_prefect.agents.executors import ExecutorRegistry, StepContext
from flowkit_prefect.agents.plan import Plan, PlanStep
from flowkit_prefect.agents.planning import PlanResult, run_plan
from flowkit_prefect.agents.tool_agent import AgentResult, ToolApproval, run_tool_agent
from flowkit_prefect.blocks.chat_models import ChatModelBlock, LocalChatModel, OpenAIChatModel
from flowkit_prefect.blocks.embedders import EmbedderBlock, LocalEmbedder, OpenAIEmbedder
from flowkit_prefect.blocks.qdrant import QdrantStore
from flowkit_prefect.blocks.validation_suite import ValidationSuite
from flowkit_prefect.codegen import (
    CodeGenOptions,
    CodeGenResult,
    CodeProblem,
    CodeSandbox,
    DockerSandbox,
    SandboxReport,
    SubprocessSandbox,
    TestCase,
    generate_code,
)
from flowkit_prefect.exceptions import (
    BudgetExceededError,
    CollectionDimensionError,
    ConfigurationError,
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
    SuiteDraftError,
    SuiteError,
    ValidationFailedError,
)
from flowkit_prefect.flows.code_generation import code_generation
from flowkit_prefect.flows.plan_and_execute import plan_and_execute
from flowkit_prefect.flows.rag_answer import rag_answer
from flowkit_prefect.flows.rag_ingest import rag_ingest
from flowkit_prefect.llm import (
    Budget,
    LLMCallCachePolicy,
    LLMResult,
    LLMTaskConfig,
    ainvoke_llm,
    invoke_llm,
    map_llm,
    publish_usage,
    track_usage,
)
from flowkit_prefect.retrieval.answer import answer_question
from flowkit_prefect.retrieval.chunking import ChunkingOptions
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

__version__ = "0.1.0"

__all__ = [
    "AgentResult",
    "Budget",
    "BudgetExceededError",
    "ChatModelBlock",
    "Chunk",
    "ChunkingOptions",
    "Citation",
    "CodeGenOptions",
    "CodeGenResult",
    "CodeProblem",
    "CodeSandbox",
    "CollectionDimensionError",
    "ConfigurationError",
    "DataReadError",
    "DockerSandbox",
    "EmbedderBlock",
    "ExecutorRegistry",
    "ExpectationRunError",
    "FlowkitError",
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
    "SubprocessSandbox",
    "SuiteDraftError",
    "SuiteError",
    "TestCase",
    "ToolApproval",
    "UpsertPlan",
    "ValidationFailedError",
    "ValidationSuite",
    "ainvoke_llm",
    "answer_question",
    "chunk_documents",
    "code_generation",
    "delete_stale_chunks",
    "embed_and_upsert",
    "generate_code",
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
]

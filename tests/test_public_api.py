"""The public surface is deliberate: ``__all__`` is sorted, complete and pinned."""

import flowkit_prefect

EXPECTED = [
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


def test_all_is_pinned_and_sorted() -> None:
    assert flowkit_prefect.__all__ == EXPECTED
    assert sorted(flowkit_prefect.__all__) == flowkit_prefect.__all__


def test_every_public_name_resolves() -> None:
    for name in flowkit_prefect.__all__:
        assert getattr(flowkit_prefect, name) is not None


def test_collection_entry_point_is_registered() -> None:
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="prefect.collections")}
    assert names.get("flowkit_prefect") == "flowkit_prefect"


def test_exceptions_share_one_base() -> None:
    for name in flowkit_prefect.__all__:
        obj = getattr(flowkit_prefect, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, flowkit_prefect.FlowkitError)


def test_flow_templates_show_a_documented_form_in_the_ui() -> None:
    for template in (
        flowkit_prefect.rag_ingest,
        flowkit_prefect.rag_answer,
        flowkit_prefect.plan_and_execute,
        flowkit_prefect.code_generation,
    ):
        properties = template.parameters.model_dump()["properties"]
        assert properties, template.name
        for name, schema in properties.items():
            assert schema.get("description"), f"{template.name}.{name} has no description"

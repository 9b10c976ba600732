"""The public surface is deliberate: ``__all__`` is sorted, complete and pinned, every name has
one home, the README's imports resolve, and importing the package stays light."""

import ast
import importlib
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import flowkit_prefect

README = Path(__file__).resolve().parents[1] / "README.md"
HEAVY = ("pandas", "great_expectations", "qdrant_client", "fastembed", "llama_cpp", "onnxruntime")

EXPECTED = [
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


def test_all_is_pinned_and_sorted() -> None:
    assert flowkit_prefect.__all__ == EXPECTED
    # sorted the way ruff's RUF022 sorts: CONSTANTS, then Classes, then functions
    by_kind = sorted(flowkit_prefect.__all__, key=lambda name: (not name.isupper(), name))
    assert by_kind == flowkit_prefect.__all__


def test_every_public_name_resolves() -> None:
    for name in flowkit_prefect.__all__:
        assert getattr(flowkit_prefect, name) is not None


def test_collection_entry_point_is_registered() -> None:
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="prefect.collections")}
    # Prefect imports every collection when it loads a block: point it at the (light) blocks
    assert names.get("flowkit_prefect") == "flowkit_prefect.blocks"


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
        flowkit_prefect.validated_pipeline,
        flowkit_prefect.validation_alert,
    ):
        properties = template.parameters.model_dump()["properties"]
        assert properties, template.name
        for name, schema in properties.items():
            assert schema.get("description"), f"{template.name}.{name} has no description"


def test_version_comes_from_the_package_metadata() -> None:
    assert flowkit_prefect.__version__ == version("flowkit-prefect")


def test_each_name_has_one_home() -> None:
    homes = flowkit_prefect._public_api
    assert set(homes) == set(flowkit_prefect.__all__)
    for name, module in homes.items():
        obj = getattr(flowkit_prefect, name)
        defined = getattr(getattr(obj, "fn", obj), "__module__", None)
        if isinstance(obj, type) or callable(obj):
            assert defined and defined.startswith(module), (name, defined, module)


def test_every_name_the_readme_imports_resolves() -> None:
    """Each ``from flowkit_prefect... import name`` in the README's Python examples works."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    imports = [
        (node.module, alias.name)
        for block in blocks
        for node in ast.walk(ast.parse(block))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("flowkit_prefect")
        for alias in node.names
    ]
    assert imports, "the README shows no `from flowkit_prefect import ...`"
    for module, name in imports:
        assert hasattr(importlib.import_module(module), name), f"from {module} import {name}"
    top_level = {name for module, name in imports if module == "flowkit_prefect"}
    assert top_level <= set(flowkit_prefect.__all__)


@pytest.mark.parametrize("module", ["flowkit_prefect", "flowkit_prefect.blocks"])
def test_importing_the_package_or_its_blocks_loads_no_heavy_library(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"`import {module}` imported {out.stdout.strip()}"

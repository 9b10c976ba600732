"""Test-driven code generation: problems, a sandbox that runs LLM-written Python against tests,
and the generate → test → fix loop."""

from flowkit_prefect.codegen._proposed_tests import validate_proposed_tests
from flowkit_prefect.codegen.engine import generate_code, run_tests
from flowkit_prefect.codegen.humaneval import load_humaneval
from flowkit_prefect.codegen.problem import CodeProblem, assemble_solution, extract_code
from flowkit_prefect.codegen.results import CodeGenOptions, CodeGenResult, StageRecord, TestRow
from flowkit_prefect.codegen.sandbox import (
    CodeSandbox,
    DockerSandbox,
    SandboxReport,
    SubprocessSandbox,
    TestCase,
    TestOutcome,
    Verdict,
    arun_in_sandbox,
    register_backend,
    run_in_sandbox,
)

__all__ = [
    "CodeGenOptions",
    "CodeGenResult",
    "CodeProblem",
    "CodeSandbox",
    "DockerSandbox",
    "SandboxReport",
    "StageRecord",
    "SubprocessSandbox",
    "TestCase",
    "TestOutcome",
    "TestRow",
    "Verdict",
    "arun_in_sandbox",
    "assemble_solution",
    "extract_code",
    "generate_code",
    "load_humaneval",
    "register_backend",
    "run_in_sandbox",
    "run_tests",
    "validate_proposed_tests",
]

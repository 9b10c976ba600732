"""From a caller's arguments to what the harness reads: argument checks, the job, its payload.

Every backend runs the same checked :class:`SandboxJob`, so invalid arguments fail the same way
(``ConfigurationError``, before any process starts) whichever sandbox runs the code.
"""

from __future__ import annotations

import ast
import json
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flowkit_prefect.blocks.sandboxes import CodeSandbox
from flowkit_prefect.codegen.sandbox._types import TestCase
from flowkit_prefect.exceptions import ConfigurationError

__all__ = ["SandboxJob", "harness_source", "make_job"]

_OPEN_FILES = 256


@dataclass
class SandboxJob:
    """A validated run request."""

    code: str
    setup: str
    tests: list[TestCase]
    audit_hook: bool = True  # tests switch layers off one at a time to prove the others
    network_namespace: bool = True
    nonce: str = field(default_factory=lambda: secrets.token_hex(16))

    def payload(self, sandbox: CodeSandbox, *, processes: int | None = None, **extra: Any) -> bytes:
        """The JSON the harness reads from stdin."""
        data: dict[str, Any] = {
            "nonce": self.nonce,
            "code": self.code,
            "setup": self.setup,
            "tests": [{"name": t.name, "code": t.code} for t in self.tests],
            "test_timeout": sandbox.test_timeout_seconds,
            "max_processes": sandbox.max_processes,
            "audit": self.audit_hook,
            "unshare_net": self.network_namespace,
            "limits": {
                "cpu_seconds": sandbox.cpu_seconds,
                "memory_bytes": sandbox.memory_mb << 20,
                "file_size_bytes": sandbox.file_size_mb << 20,
                "disk_bytes": sandbox.disk_mb << 20,
                "open_files": _OPEN_FILES,
                "processes": processes,
            },
        }
        data.update(extra)
        return json.dumps(data).encode()


def make_job(
    sandbox: CodeSandbox, code: str, tests: Sequence[TestCase], setup: str = ""
) -> SandboxJob:
    """Validate the arguments (``ConfigurationError`` says what to fix) into a job."""
    sandbox.check_limits()
    if not isinstance(code, str) or not code.strip():
        raise ConfigurationError(
            "code is empty: pass the candidate module's Python source as a string."
        )
    if not isinstance(setup, str):
        raise ConfigurationError("setup must be a string of Python source (or '').")
    if isinstance(tests, str | bytes) or not isinstance(tests, Sequence):
        raise ConfigurationError("tests must be a list of TestCase(name=..., code=...).")
    cases: list[TestCase] = []
    for index, test in enumerate(tests):
        try:
            case = test if isinstance(test, TestCase) else TestCase.model_validate(test)
        except ValidationError as exc:
            raise ConfigurationError(
                f"tests[{index}] is not a TestCase(name=..., code=...): {exc}"
            ) from exc
        if not case.name.strip():
            raise ConfigurationError(f"tests[{index}] has an empty name: give each a name.")
        if not case.code.strip():
            raise ConfigurationError(f"test {case.name!r} has no code: add its statements.")
        _parse_trusted(case.code, f"test {case.name!r}")
        cases.append(case)
    counts = Counter(case.name for case in cases)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise ConfigurationError(
            f"test names must be unique; rename the repeated ones: {', '.join(duplicates)}."
        )
    if setup.strip():
        _parse_trusted(setup, "the setup")
    return SandboxJob(code=code, setup=setup, tests=cases)


def _parse_trusted(source: str, what: str) -> None:
    """Tests and setup are trusted: a syntax error there is the caller's bug, not a verdict."""
    try:
        ast.parse(source)
    except SyntaxError as exc:
        raise ConfigurationError(
            f"{what} does not compile (line {exc.lineno}: {exc.msg}); tests and setup are "
            "trusted code and must be valid Python."
        ) from exc


@cache
def harness_source() -> str:
    """The source of ``_harness.py``, which every backend ships into the sandbox as text."""
    return (Path(__file__).with_name("_harness.py")).read_text(encoding="utf-8")


def sandbox_env(home: str) -> dict[str, str]:
    """The environment the harness runs under, built from nothing (no secret of the worker's):
    ``home`` as HOME and TMPDIR, UTF-8, fixed hash seed, no bytecode, no user site, unbuffered."""
    return {
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONSAFEPATH": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONUNBUFFERED": "1",
    }

"""Run LLM-generated Python against tests in a sandbox, never in the worker's process.

``run_in_sandbox(sandbox, code, tests)`` (``await arun_in_sandbox(...)`` in async code) runs the
tests in the backend registered for the block's class (``flowkit_prefect.blocks.sandboxes``
holds the blocks, this package the running: ``register_backend`` adds one for a new class).

``SubprocessSandbox`` (the default) starts a fresh interpreter per run in a temporary folder,
with resource limits, a wall clock, a network namespace, an unprivileged uid when the worker is
root, an environment without secrets, and an audit hook (see ``_harness.py``).
``DockerSandbox`` runs the same harness in a throwaway container (no network, read-only root,
size-limited tmpfs, dropped capabilities).

Bad code is never an exception: it is a ``verdict`` in the ``SandboxReport``:

================  =========================================================================
``ok``            the code loaded and every test ran; each test may still pass or fail
``syntax_error``  the code does not compile; ``detail`` names the line
``load_error``    the module raised while loading (ModuleNotFoundError, NameError, sys.exit)
``timeout``       the wall-time or CPU-time limit ended the run, or one test ran past its
                  per-test limit and could not be interrupted (a test that *is* interrupted
                  just fails with "timed out after N s" and does not change the verdict)
``memory_limit``  a MemoryError under the address-space limit
``output_limit``  stdout+stderr past ``output_bytes`` (the run is stopped), a file past
                  ``file_size_mb``, or the sandbox folder past ``disk_mb``
``process_limit`` more threads or processes than ``max_processes``
``forbidden``     the code tried something the sandbox refuses: network, new processes,
                  native code, signalling other processes, writing outside its folder,
                  reading other processes' ``/proc`` entries or files outside the allowlist
``crashed``       the process died some other way (a signal such as SIGSEGV, ``os._exit``)
================  =========================================================================

How one is chosen: (1) if the parent stopped the run, ``timeout`` or ``output_limit``;
(2) if the code did not load, ``syntax_error``, ``load_error``, or the limit or refusal that
made loading fail; (3) if the process died before finishing, ``timeout`` (CPU limit) or
``crashed``; (4) otherwise the first limit or refusal hit inside a test, else ``ok``. So in
case (4) a test that hit a limit or a refusal just fails, the others still run, and the
verdict says what happened. ``outcomes`` always has one entry per test, in input order; a
test that did not run says why ("not run: the sandbox was killed (wall-time limit)").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from flowkit_prefect.blocks.sandboxes import CodeSandbox, DockerSandbox, SubprocessSandbox
from flowkit_prefect.codegen.sandbox._docker import run_docker
from flowkit_prefect.codegen.sandbox._jobs import SandboxJob, make_job
from flowkit_prefect.codegen.sandbox._subprocess import run_subprocess
from flowkit_prefect.codegen.sandbox._types import SandboxReport, TestCase, TestOutcome, Verdict
from flowkit_prefect.exceptions import ConfigurationError

__all__ = [
    "Backend",
    "CodeSandbox",
    "DockerSandbox",
    "SandboxJob",
    "SandboxReport",
    "SubprocessSandbox",
    "TestCase",
    "TestOutcome",
    "Verdict",
    "arun_in_sandbox",
    "backend_for",
    "make_job",
    "register_backend",
    "run_in_sandbox",
    "run_job",
]

_S = TypeVar("_S", bound=CodeSandbox)

Backend = Callable[[Any, SandboxJob, threading.Event | None], SandboxReport]
"""Runs a checked job in one kind of sandbox: ``backend(sandbox, job, cancel) -> report``."""

_BACKENDS: dict[type[CodeSandbox], Backend] = {}


def register_backend(
    block_cls: type[_S],
    backend: Callable[[_S, SandboxJob, threading.Event | None], SandboxReport],
) -> None:
    """Run sandboxes of ``block_cls`` (and its subclasses) with ``backend``; replaces any
    backend registered for exactly that class."""
    if not (isinstance(block_cls, type) and issubclass(block_cls, CodeSandbox)):
        raise ConfigurationError(
            f"register_backend needs a CodeSandbox subclass, got {block_cls!r}."
        )
    _BACKENDS[block_cls] = backend


def backend_for(sandbox: CodeSandbox) -> Backend:
    """The backend registered for the sandbox's class or its nearest base class."""
    if not isinstance(sandbox, CodeSandbox):
        raise ConfigurationError(
            f"sandbox must be a CodeSandbox block (SubprocessSandbox, DockerSandbox), got "
            f"{type(sandbox).__name__}."
        )
    for cls in type(sandbox).__mro__:
        backend = _BACKENDS.get(cls)
        if backend is not None:
            return backend
    name = type(sandbox).__name__
    raise ConfigurationError(
        f"No sandbox backend is registered for {name}: call "
        f"flowkit_prefect.codegen.register_backend({name}, run) with a function "
        "run(sandbox, job, cancel) -> SandboxReport, or use SubprocessSandbox or DockerSandbox."
    )


def run_job(
    sandbox: CodeSandbox, job: SandboxJob, cancel: threading.Event | None = None
) -> SandboxReport:
    """Run a job from :func:`make_job` in the sandbox's backend."""
    return backend_for(sandbox)(sandbox, job, cancel)


def run_in_sandbox(
    sandbox: CodeSandbox,
    code: str,
    tests: Sequence[TestCase],
    *,
    setup: str = "",
    cancel: threading.Event | None = None,
) -> SandboxReport:
    """Load ``code`` as a module in the sandbox and run each test against it.

    ``setup`` is trusted Python run in the module namespace *before* the code (imports the
    problem statement promises, helpers for the tests). ``cancel``, when set from another
    thread, kills the run and raises ``SandboxError``.
    """
    backend = backend_for(sandbox)
    return backend(sandbox, make_job(sandbox, code, tests, setup), cancel)


async def arun_in_sandbox(
    sandbox: CodeSandbox, code: str, tests: Sequence[TestCase], *, setup: str = ""
) -> SandboxReport:
    """``run_in_sandbox`` in a worker thread; cancelling the awaiting task kills the sandbox."""
    backend_for(sandbox)  # a missing backend or invalid arguments fail here, in the caller's task
    make_job(sandbox, code, tests, setup)
    cancel = threading.Event()
    try:
        return await anyio.to_thread.run_sync(
            lambda: run_in_sandbox(sandbox, code, tests, setup=setup, cancel=cancel),
            abandon_on_cancel=True,
        )
    except anyio.get_cancelled_exc_class():
        cancel.set()
        raise


register_backend(SubprocessSandbox, run_subprocess)
register_backend(DockerSandbox, run_docker)

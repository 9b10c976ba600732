"""Sandbox blocks: where generated code runs and under which limits -- configuration only.

Running code in them is :func:`flowkit_prefect.codegen.run_in_sandbox`'s job (one backend per
block class, in ``flowkit_prefect.codegen.sandbox``), so saving or loading a block never pulls
in the process-supervision machinery.
"""

from __future__ import annotations

from abc import ABC

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, model_validator

from flowkit_prefect.exceptions import ConfigurationError

__all__ = ["CodeSandbox", "DockerSandbox", "SubprocessSandbox"]


class CodeSandbox(Block, ABC):
    """Where generated code runs against tests, and the limits it runs under.

    Run code with ``run_in_sandbox(sandbox, code, tests)`` (``await arun_in_sandbox(...)`` in
    async flows) from ``flowkit_prefect.codegen``. Invalid arguments raise
    ``ConfigurationError``; a broken sandbox (no engine, no interpreter) raises
    ``SandboxError``; anything the code does is reported in the ``SandboxReport``.
    """

    cpu_seconds: float = Field(default=10.0, description="CPU time the whole run may use.")
    wall_seconds: float = Field(
        default=20.0, description="Real time the whole run may take; then it is killed."
    )
    test_timeout_seconds: float = Field(
        default=5.0, description="Real time one test may take before it fails as timed out."
    )
    memory_mb: int = Field(default=512, description="Address space of the sandbox process.")
    file_size_mb: int = Field(default=16, description="Largest file the code may write.")
    disk_mb: int = Field(
        default=64, description="Total size of the files the code may leave in its folder."
    )
    max_processes: int = Field(
        default=16, description="Threads and processes the code may have at once."
    )
    output_bytes: int = Field(
        default=65536, description="Bytes of stdout+stderr before the run is stopped."
    )

    @model_validator(mode="after")
    def _limits_are_positive(self) -> CodeSandbox:
        self.check_limits()
        return self

    def check_limits(self) -> None:
        """Raise ``ConfigurationError`` naming a limit that is not positive (fields can be
        changed after the block is created, so every run checks again)."""
        for name in ("cpu_seconds", "wall_seconds", "test_timeout_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(
                    f"{type(self).__name__}.{name} is {getattr(self, name)!r}: set it to a "
                    "positive number of seconds."
                )
        minimums = {
            "memory_mb": 32,
            "file_size_mb": 1,
            "disk_mb": 1,
            "max_processes": 1,
            "output_bytes": 1,
        }
        for name, minimum in minimums.items():
            if getattr(self, name) < minimum:
                raise ConfigurationError(
                    f"{type(self).__name__}.{name} is {getattr(self, name)!r}: set it to at "
                    f"least {minimum}."
                )


class SubprocessSandbox(CodeSandbox):
    """Runs the code in a fresh local Python process per run: the default sandbox.

    Layers: a temporary folder (removed afterwards) as the only writable place; a minimal
    environment (nothing inherited from the worker); ``python -s -S`` (stdlib only); rlimits on
    CPU, address space, file size, open files, processes, core dumps; the wall clock and a
    SIGKILL of the whole process group; a network namespace; an audit hook. When the worker
    runs as root the process also switches to an unprivileged uid -- by default a fresh one per
    run, so concurrent sandboxes can neither signal each other nor share a process limit, and
    anything left running under it is killed afterwards. Generated code that needs packages
    beyond the standard library needs ``site_packages=True``.

    As root, the kernel enforces most of this on its own (other uid: no access to the worker's
    ``/proc/<pid>/environ``, signals, or root's files; its own ``RLIMIT_NPROC``); world-writable
    places such as ``/tmp`` and world-readable files are kept out by the audit hook. Not as
    root, the code shares the worker's uid, so a user + network namespace and the audit hook
    (which also refuses signals, ``prlimit`` and pidfds aimed at other processes) carry the
    isolation: prefer a root worker or ``DockerSandbox`` for untrusted code at scale.

    Example:
        ```python
        from flowkit_prefect.codegen import SubprocessSandbox, TestCase, run_in_sandbox

        sandbox = SubprocessSandbox.load("BLOCK_NAME")  # or SubprocessSandbox(wall_seconds=10)
        report = run_in_sandbox(
            sandbox,
            "def add(a, b):\\n    return a + b\\n",
            [TestCase(name="small", code="assert add(1, 2) == 3")],
        )
        print(report.verdict, report.passed, report.outcomes[0].error)
        ```
    """

    _block_type_name = "Flowkit Subprocess Sandbox"
    _block_type_slug = "flowkit-subprocess-sandbox"
    _description = "Runs generated Python against tests in a locked-down local subprocess."
    _documentation_url = HttpUrl("https://github.com/flowkit-prefect/flowkit-prefect#blocks")

    python: str | None = Field(
        default=None,
        description=(
            "Interpreter for the sandbox. Empty: the worker's own, or (as root, when an "
            "unprivileged user cannot read it) the system python3 of the same version."
        ),
    )
    site_packages: bool = Field(
        default=False,
        description="Let the code import the interpreter's installed packages (drops -S).",
    )
    sandbox_uid: int | None = Field(
        default=None,
        description=(
            "When the worker runs as root, the uid/gid the code runs as. Empty: a fresh uid "
            "per run (from 1,500,000,000 up)."
        ),
    )
    tmp_dir: str | None = Field(
        default=None, description="Where sandbox folders are created. Empty: the system temp."
    )


class DockerSandbox(CodeSandbox):
    """Runs the code in a throwaway container: ``docker run --rm`` per run, via the docker CLI.

    The container has no network (``--network none``), a read-only root with a size-limited
    tmpfs as its only writable folder, all capabilities dropped, ``no-new-privileges``, uid
    65534, a memory and pids limit, no IPC namespace sharing, and no log storage. The image is
    never pulled: build it locally with a ``python3`` (3.9+) on its PATH, e.g.
    ``FROM debian:bookworm-slim`` + ``apt-get install python3``, tagged as ``image``. The
    harness's audit hook and rlimits run inside as well. In the report, the code's stderr is
    merged into ``stdout`` (the container's stderr carries the results).

    Example:
        ```python
        from flowkit_prefect.codegen import DockerSandbox, run_in_sandbox

        sandbox = DockerSandbox.load("BLOCK_NAME")  # or DockerSandbox(image="...")
        report = run_in_sandbox(sandbox, code, tests)
        ```
    """

    _block_type_name = "Flowkit Docker Sandbox"
    _block_type_slug = "flowkit-docker-sandbox"
    _description = "Runs generated Python against tests in a throwaway, network-less container."
    _documentation_url = HttpUrl("https://github.com/flowkit-prefect/flowkit-prefect#blocks")

    image: str = Field(
        default="flowkit-sandbox:py311",
        description="A local image with python3 on its PATH; it is never pulled.",
    )
    docker_host: str | None = Field(
        default=None,
        description="Docker engine address, e.g. unix:///run/docker.sock. Empty: DOCKER_HOST "
        "or the default socket.",
    )
    python: str = Field(default="python3", description="The interpreter inside the image.")
    cpus: float = Field(default=1.0, gt=0, description="CPU cores the container may use.")

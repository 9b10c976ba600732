"""Run LLM-generated Python against tests in a sandbox, never in the worker's process.

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

import ast
import contextlib
import json
import os
import random
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import anyio
import anyio.to_thread
from prefect.blocks.core import Block
from prefect.logging import get_logger
from pydantic import BaseModel, Field, ValidationError, computed_field, model_validator

from flowkit_prefect.exceptions import ConfigurationError, SandboxError

logger = get_logger("flowkit.sandbox")

Verdict = Literal[
    "ok",
    "syntax_error",
    "load_error",
    "forbidden",
    "timeout",
    "memory_limit",
    "output_limit",
    "process_limit",
    "crashed",
]

_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
_NOBODY = 65534
_UID_BASE = 1_500_000_000  # per-run uids: far above real users and rootless-container ranges
_UID_SPAN = 10_000_000
_OPEN_FILES = 256
_POLL_SECONDS = 0.05
_DISK_CHECK_SECONDS = 0.25
_DISK_MAX_ENTRIES = 20_000
_DRAIN_SECONDS = 0.5
_NOISE_BYTES = 8192


class TestCase(BaseModel):
    """One test: Python statements run after the candidate module, in a copy of its namespace."""

    __test__: ClassVar[bool] = False  # not a pytest test class

    name: str = Field(description="A unique name, shown in the outcome.")
    code: str = Field(
        description="Statements run against the module's namespace, e.g. 'assert add(1, 2) == 3'."
    )


class TestOutcome(BaseModel):
    """How one test went."""

    __test__: ClassVar[bool] = False

    name: str
    passed: bool
    error: str | None = Field(
        default=None,
        description="A short reason, e.g. 'AssertionError: assert add(1, 2) == 3 failed: "
        "add(1, 2) returned 4' or 'timed out after 2 s'. None when the test passed.",
    )
    duration_seconds: float = 0.0


class SandboxReport(BaseModel):
    """What happened to one run: a verdict for the run, and one outcome per test."""

    verdict: Verdict = Field(description="Why the run ended; see the module docstring.")
    detail: str = Field(description="What happened, in a sentence.")
    outcomes: list[TestOutcome] = Field(
        default_factory=list, description="One per test, in the order given."
    )
    stdout: str = Field(default="", description="The tail of what the code printed.")
    stderr: str = Field(default="", description="The tail of the code's stderr.")
    wall_seconds: float = Field(default=0.0, description="From process start to its exit.")
    isolation: list[str] = Field(
        default_factory=list, description="The isolation layers that were active for this run."
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> int:
        """How many tests passed."""
        return sum(1 for outcome in self.outcomes if outcome.passed)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed(self) -> int:
        """How many tests failed or did not run."""
        return len(self.outcomes) - self.passed

    @computed_field  # type: ignore[prop-decorator]
    @property
    def all_passed(self) -> bool:
        """True when the run was clean (verdict ``ok``) and every test passed."""
        return self.verdict == "ok" and self.failed == 0


@dataclass
class _Job:
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


class _Tail:
    """The last ``cap`` bytes of a stream, and how many came in total."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.buffer = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        self.buffer += data
        if len(self.buffer) > self.cap:
            del self.buffer[: len(self.buffer) - self.cap]

    def text(self) -> str:
        dropped = self.total - len(self.buffer)
        body = self.buffer.decode("utf-8", "replace")
        return f"[... {dropped:,} earlier bytes dropped ...]\n{body}" if dropped else body


@dataclass
class _Run:
    """What the parent observed of one sandbox process."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    stdout: _Tail = field(default_factory=lambda: _Tail(0))
    stderr: _Tail = field(default_factory=lambda: _Tail(0))
    kill_reason: str | None = None  # wall | test | output | disk | cancel
    running: int | None = None  # the test that was running when the run ended
    noise: bytearray = field(default_factory=bytearray)  # non-protocol bytes on the channel
    returncode: int | None = None  # negative: killed by that signal
    cpu_seconds: float | None = None
    wall_seconds: float = 0.0

    def first(self, kind: str) -> dict[str, Any] | None:
        return next((m for m in self.messages if m.get("t") == kind), None)


def _has_exited(pid: int) -> bool:
    """True once ``pid`` has exited; leaves it unreaped so its process group stays valid."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _supervise(
    sandbox: CodeSandbox,
    job: _Job,
    *,
    pid: int,
    payload: bytes,
    stdin_fd: int,
    streams: dict[int, str],
    kill: Callable[[], None],
    cancel: threading.Event | None,
    disk_usage: Callable[[], int] | None = None,
) -> _Run:
    """Feed the job, drain output (capped) and results, enforce the clocks; kill when needed.

    Always kills the process (group) before returning and closes ``stdin_fd`` and every
    descriptor in ``streams``; the caller only reaps the process.
    """
    run = _Run(stdout=_Tail(sandbox.output_bytes), stderr=_Tail(sandbox.output_bytes))
    started = time.monotonic()
    deadline = started + sandbox.wall_seconds
    test_limit = sandbox.test_timeout_seconds + max(1.0, 0.5 * sandbox.test_timeout_seconds)
    result_cap = 65536 + 4096 * len(job.tests)
    selector = selectors.DefaultSelector()
    os.set_blocking(stdin_fd, False)
    selector.register(stdin_fd, selectors.EVENT_WRITE, "stdin")
    for fd, kind in streams.items():
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ, kind)
    pending = memoryview(payload)
    partial = bytearray()
    result_bytes = 0
    running_since = 0.0
    next_disk_check = started + _DISK_CHECK_SECONDS
    exited_at: float | None = None

    def on_line(line: bytes) -> None:
        nonlocal running_since
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict) or message.get("n") != job.nonce:
            if len(run.noise) < _NOISE_BYTES:
                run.noise += line[:_NOISE_BYTES] + b"\n"
            return
        index = message.get("i")
        if "i" in message and not (
            type(index) is int and 0 <= index < len(job.tests)
        ):  # the code can write to the channel too: never trust its shape
            return
        run.messages.append(message)
        if message.get("t") == "start":
            run.running, running_since = message.get("i"), time.monotonic()
        elif message.get("t") == "result":
            run.running = None

    def read(key: selectors.SelectorKey) -> None:
        nonlocal result_bytes
        try:
            data = os.read(key.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            selector.unregister(key.fd)
            os.close(key.fd)
            if key.data == "result" and partial:
                on_line(bytes(partial))
                partial.clear()
            return
        if key.data == "result":
            result_bytes += len(data)
            partial.extend(data)
            while (end := partial.find(b"\n")) >= 0:
                line = bytes(partial[:end])
                del partial[: end + 1]
                on_line(line)
        else:
            (run.stdout if key.data == "stdout" else run.stderr).add(data)

    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                run.kill_reason = "wall"
            elif cancel is not None and cancel.is_set():
                run.kill_reason = "cancel"
            elif run.running is not None and now - running_since > test_limit:
                run.kill_reason = "test"
            elif (
                run.stdout.total + run.stderr.total > sandbox.output_bytes
                or result_bytes > result_cap
                or len(partial) > result_cap
            ):
                run.kill_reason = "output"
            elif disk_usage is not None and now >= next_disk_check:
                next_disk_check = now + _DISK_CHECK_SECONDS
                if disk_usage() > sandbox.disk_mb << 20:
                    run.kill_reason = "disk"
            if run.kill_reason:
                break
            readers = [k for k in selector.get_map().values() if k.data != "stdin"]
            if exited_at is not None and (not readers or now - exited_at > _DRAIN_SECONDS):
                break
            if selector.get_map():
                for key, _ in selector.select(timeout=max(0.0, min(_POLL_SECONDS, deadline - now))):
                    if key.data != "stdin":
                        read(key)
                        continue
                    try:
                        pending = pending[os.write(key.fd, pending[:65536]) :]
                    except BlockingIOError:
                        continue
                    except OSError:  # the child closed stdin or died: stop feeding it
                        pending = pending[:0]
                    if not pending:
                        selector.unregister(key.fd)
                        os.close(key.fd)
            else:
                time.sleep(_POLL_SECONDS / 5)
            if exited_at is None and _has_exited(pid):
                exited_at = time.monotonic()
    finally:
        kill()
        # what the harness wrote before it died is still in the pipes: read it
        drain_until = time.monotonic() + 0.2
        while time.monotonic() < drain_until:
            readers = [k for k in selector.get_map().values() if k.data != "stdin"]
            if not readers:
                break
            for key, _ in selector.select(timeout=0.05):
                if key.data != "stdin":
                    read(key)
        for key in list(selector.get_map().values()):
            selector.unregister(key.fd)
            with contextlib.suppress(OSError):
                os.close(key.fd)
        selector.close()
    run.wall_seconds = time.monotonic() - started
    return run


_VERDICTS = frozenset(get_args(Verdict))


def _text(value: Any, limit: int = 2000) -> str:
    """A child-supplied value as a bounded string."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: Any) -> float:
    return float(value) if type(value) in (int, float) and value == value else 0.0


_SIGNAL_TEXT = {
    signal.SIGSEGV: "SIGSEGV (segmentation fault: a stack overflow or out of memory?)",
    signal.SIGBUS: "SIGBUS (bus error)",
    signal.SIGABRT: "SIGABRT (the interpreter aborted)",
    signal.SIGKILL: "SIGKILL (killed from outside, e.g. the kernel's out-of-memory killer)",
    signal.SIGXCPU: "SIGXCPU (CPU-time limit)",
    signal.SIGXFSZ: "SIGXFSZ (file-size limit)",
}


def _signal_name(number: int) -> str:
    with contextlib.suppress(ValueError):
        return _SIGNAL_TEXT.get(signal.Signals(number), signal.Signals(number).name)
    return f"signal {number}"


def _build_report(sandbox: CodeSandbox, job: _Job, run: _Run, notes: list[str]) -> SandboxReport:
    """Turn what the parent observed into a verdict, a detail and one outcome per test."""
    if run.kill_reason == "cancel":
        raise SandboxError("The sandbox run was cancelled; its process was killed.")
    fatal = run.first("fatal")
    ready = run.first("ready")
    noise = run.noise.decode("utf-8", "replace").strip()
    if fatal is not None and ready is None:  # after "ready" only the code could have sent it
        raise SandboxError(
            f"The sandbox harness failed before loading the code: {_text(fatal.get('detail'))}"
        )
    if ready is None:
        how = (
            f"did not start within the {sandbox.wall_seconds:g} s wall-time limit"
            if run.kill_reason
            else f"exited with status {run.returncode} before it was ready"
        )
        raise SandboxError(
            f"The sandbox harness {how}. {noise or run.stderr.text()[-2000:]}".strip()
        )

    results = {m.get("i"): m for m in run.messages if m.get("t") == "result"}
    load_failed = run.first("load_failed")
    loaded = run.first("loaded") is not None
    done = run.first("done") is not None
    broken = run.first("broken")
    flags = [m for m in run.messages if m.get("t") == "flag"]
    tests = job.tests

    def running_name() -> str:
        if run.running is not None and 0 <= run.running < len(tests):
            return f" while test {tests[run.running].name!r} ran"
        return " while loading the code" if not loaded else ""

    cpu_hit = (
        run.first("cpu") is not None
        or run.returncode == -signal.SIGXCPU
        or (
            run.returncode == -signal.SIGKILL
            and run.cpu_seconds is not None
            and run.cpu_seconds >= sandbox.cpu_seconds - 0.05
        )
    )
    if run.kill_reason == "wall":
        verdict: Verdict = "timeout"
        detail = (
            f"the code ran past the {sandbox.wall_seconds:g} s wall-time limit and was killed"
            + running_name()
        )
        now_text = f"timed out: the {sandbox.wall_seconds:g} s wall-time limit hit this test"
        later = "not run: the sandbox was killed (wall-time limit)"
    elif run.kill_reason == "test":
        verdict = "timeout"
        name = tests[run.running].name if run.running is not None else "?"
        detail = (
            f"test {name!r} ran past its {sandbox.test_timeout_seconds:g} s limit and could not "
            "be interrupted (stuck in C code, or the code disabled the alarm), so the sandbox "
            "was killed"
        )
        now_text = f"timed out after {sandbox.test_timeout_seconds:g} s (the sandbox was killed)"
        later = "not run: the sandbox was killed (a test could not be interrupted)"
    elif run.kill_reason in ("output", "disk"):
        verdict = "output_limit"
        detail = (
            f"the code printed more than {sandbox.output_bytes:,} bytes (the output limit)"
            if run.kill_reason == "output"
            else f"the code wrote more than {sandbox.disk_mb} MB of files into its folder"
        ) + f" and was killed{running_name()}"
        now_text = "killed: this test exceeded the output limit"
        later = "not run: the sandbox was killed (output limit)"
    elif load_failed is not None:
        verdict = load_failed.get("verdict")
        if verdict not in _VERDICTS or verdict == "ok":
            verdict = "load_error"
        detail = _text(load_failed.get("detail"))
        now_text = later = {
            "syntax_error": "not run: the code has a syntax error",
            "forbidden": "not run: the code did a forbidden operation while loading",
            "memory_limit": "not run: the code ran out of memory while loading",
            "process_limit": "not run: the code hit the process limit while loading",
            "output_limit": "not run: the code hit a file-size or disk limit while loading",
        }.get(verdict, "not run: the code raised while loading")
    elif not done and cpu_hit:
        verdict = "timeout"
        detail = (
            f"the code used up its {sandbox.cpu_seconds:g} s CPU-time limit and was killed"
            + running_name()
        )
        now_text = f"timed out: the {sandbox.cpu_seconds:g} s CPU-time limit hit this test"
        later = "not run: the sandbox was killed (CPU-time limit)"
    elif not done:
        verdict = "crashed"
        if broken is not None:
            how = f"the harness broke ({_text(broken.get('detail'))})"
        elif run.returncode is not None and run.returncode < 0:
            how = f"the sandbox process died from {_signal_name(-run.returncode)}"
        else:
            how = (
                f"the sandbox process exited with status {run.returncode} before finishing "
                "(did the code call os._exit() or close the harness's pipe?)"
            )
        detail = how + running_name()
        now_text = f"crashed: {how}"
        later = "not run: the sandbox process died"
    else:
        verdict, detail = "ok", ""
        now_text = later = "not run"
        if flags:
            kind = flags[0].get("kind")
            verdict = {
                "forbidden": "forbidden",
                "memory": "memory_limit",
                "file_size": "output_limit",
                "disk": "output_limit",
                "process": "process_limit",
            }.get(kind, "crashed")
            detail = _text(flags[0].get("detail"))

    outcomes = []
    for index, test in enumerate(tests):
        result = results.get(index)
        if result is not None:
            outcomes.append(
                TestOutcome(
                    name=test.name,
                    passed=result.get("passed") is True,
                    error=_text(result["error"]) if result.get("error") is not None else None,
                    duration_seconds=_number(result.get("duration")),
                )
            )
        else:
            outcomes.append(
                TestOutcome(
                    name=test.name, passed=False, error=now_text if index == run.running else later
                )
            )
    if verdict == "ok":
        passed = sum(o.passed for o in outcomes)
        detail = f"ran {len(tests)} test(s): {passed} passed, {len(tests) - passed} failed"
    notes_from_child = ready.get("isolation")
    isolation = [_text(n, 200) for n in notes_from_child or [] if isinstance(n, str)][:20]
    return SandboxReport(
        verdict=verdict,
        detail=detail,
        outcomes=outcomes,
        stdout=run.stdout.text(),
        stderr=run.stderr.text(),
        wall_seconds=round(run.wall_seconds, 4),
        isolation=[*notes, *isolation],
    )


class CodeSandbox(Block, ABC):
    """Where generated code runs against tests, and the limits it runs under.

    Use ``arun_tests`` in flows (async) and ``run_tests`` elsewhere. Invalid arguments raise
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
        self._check_limits()
        return self

    def _check_limits(self) -> None:
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

    def run_tests(
        self,
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
        return self._run_job(self._make_job(code, tests, setup), cancel)

    @abstractmethod
    def _run_job(self, job: _Job, cancel: threading.Event | None) -> SandboxReport:
        """Run a checked job in this kind of sandbox."""

    async def arun_tests(
        self, code: str, tests: Sequence[TestCase], *, setup: str = ""
    ) -> SandboxReport:
        """``run_tests`` in a worker thread; cancelling the awaiting task kills the sandbox."""
        self._make_job(code, tests, setup)  # invalid arguments fail here, in the caller's task
        cancel = threading.Event()
        try:
            return await anyio.to_thread.run_sync(
                lambda: self.run_tests(code, tests, setup=setup, cancel=cancel),
                abandon_on_cancel=True,
            )
        except anyio.get_cancelled_exc_class():
            cancel.set()
            raise

    def _make_job(self, code: str, tests: Sequence[TestCase], setup: str) -> _Job:
        """Validate the arguments (``ConfigurationError`` says what to fix) into a job."""
        self._check_limits()
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
        return _Job(code=code, setup=setup, tests=cases)


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
def _harness_source() -> str:
    return (Path(__file__).with_name("_harness.py")).read_text(encoding="utf-8")


def _proc_status(pid: str) -> dict[str, str]:
    fields = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="utf-8") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _tasks_of(uid: int) -> int:
    """Threads (what RLIMIT_NPROC counts) of all processes whose real uid is ``uid``."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            status = _proc_status(entry)
            if status.get("Uid", "").split()[:1] == [str(uid)]:
                count += int(status.get("Threads", "1") or 1)
    return count


def _live_pids_of(uid: int) -> list[int]:
    """PIDs running as ``uid``, zombies excluded (dead, only waiting for their reaper)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            status = _proc_status(entry)
            zombie = status.get("State", "").startswith("Z")
            if status.get("Uid", "").split()[:1] == [str(uid)] and not zombie:
                pids.append(int(entry))
    return pids


def _kill_uid(uid: int) -> None:
    """SIGKILL, by PID, every process still running as a per-run sandbox uid."""
    for _ in range(100):
        pids = _live_pids_of(uid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    logger.warning("Processes of sandbox uid %d survived SIGKILL", uid)


def _id_mapped(kind: str, value: int) -> bool:
    """True when ``value`` is a valid uid/gid in this user namespace."""
    try:
        text = Path(f"/proc/self/{kind}_map").read_text()
    except OSError:
        return value == _NOBODY
    for line in text.splitlines():
        inside, _, count = (int(x) for x in line.split())
        if inside <= value < inside + count:
            return True
    return False


_usable: dict[str, bool] = {}


def _usable_by_others(python: str) -> bool:
    """Whether an unprivileged uid can start ``python`` and import the stdlib (cached)."""
    if python not in _usable:
        try:
            probe = subprocess.run(
                [python, "-s", "-S", "-c", "import ast, json, math, resource, signal, ctypes"],
                user=_NOBODY,
                group=_NOBODY,
                extra_groups=[],
                cwd="/",
                env={"PATH": _SYSTEM_PATH, "LC_ALL": "C.UTF-8"},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
            )
            _usable[python] = probe.returncode == 0
        except (OSError, subprocess.SubprocessError):
            _usable[python] = False
    return _usable[python]


def _folder_usage(folder: Path) -> int:
    """Bytes used under ``folder``; huge when it holds too many entries to count quickly."""
    total, entries, stack = 0, 0, [str(folder)]
    while stack:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as listing:
            for entry in listing:
                entries += 1
                if entries > _DISK_MAX_ENTRIES:
                    return 1 << 62
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    total += info.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
    return total


def _remove_tree(path: Path) -> None:
    def make_writable(func: Callable[..., Any], target: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
        with contextlib.suppress(OSError):
            func(target)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=make_writable)
    else:
        shutil.rmtree(path, onerror=make_writable)
    if path.exists():
        logger.warning("Could not fully remove the sandbox folder %s", path)


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
        from flowkit_prefect.codegen import SubprocessSandbox, TestCase

        sandbox = SubprocessSandbox.load("BLOCK_NAME")  # or SubprocessSandbox(wall_seconds=10)
        report = sandbox.run_tests(
            "def add(a, b):\\n    return a + b\\n",
            [TestCase(name="small", code="assert add(1, 2) == 3")],
        )
        print(report.verdict, report.passed, report.outcomes[0].error)
        ```
    """

    _block_type_name = "Flowkit Subprocess Sandbox"
    _block_type_slug = "flowkit-subprocess-sandbox"
    _description = "Runs generated Python against tests in a locked-down local subprocess."
    _documentation_url = "https://github.com/flowkit-prefect/flowkit-prefect#blocks"

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

    def _pick_ids(self) -> tuple[int, int, bool]:
        """(uid, gid, is_per_run) for the child when the worker is root."""
        if self.sandbox_uid is not None:
            return self.sandbox_uid, self.sandbox_uid, False
        uid = _UID_BASE + random.randrange(_UID_SPAN)
        if _id_mapped("uid", uid) and _id_mapped("gid", uid):
            return uid, uid, True
        return _NOBODY, _NOBODY, False

    def _interpreter(self, as_root: bool) -> tuple[str, str | None]:
        """The interpreter to run, and a note when it is not the worker's own."""
        if not as_root:
            return self.python or sys.executable, None
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        candidates = (
            [self.python]
            if self.python
            else [
                sys.executable,
                shutil.which(version, path=_SYSTEM_PATH),
                shutil.which("python3", path=_SYSTEM_PATH),
            ]
        )
        for candidate in candidates:
            if candidate and _usable_by_others(candidate):
                note = None if candidate == sys.executable else f"interpreter {candidate}"
                return candidate, note
        raise SandboxError(
            f"No Python interpreter the unprivileged sandbox user can run (tried "
            f"{', '.join(c for c in candidates if c)}). Install a system python3 (e.g. `apt-get "
            "install python3`) or set the block's `python` to a world-readable interpreter."
        )

    def _run_job(self, job: _Job, cancel: threading.Event | None) -> SandboxReport:
        as_root = os.geteuid() == 0
        uid = gid = None
        per_run_uid = False
        if as_root:
            uid, gid, per_run_uid = self._pick_ids()
        python, python_note = self._interpreter(as_root)
        try:
            root = Path(tempfile.mkdtemp(prefix="flowkit-sandbox-", dir=self.tmp_dir))
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot create a sandbox folder in {self.tmp_dir or tempfile.gettempdir()!r}: "
                f"{exc}. Point the block's tmp_dir at a writable folder."
            ) from exc
        pid: int | None = None
        try:
            os.chmod(root, 0o711)
            work = root / "work"
            work.mkdir(mode=0o700)
            harness = root / "harness.py"
            harness.write_text(_harness_source(), encoding="utf-8")
            harness.chmod(0o644)
            if as_root:
                os.chown(work, uid, gid)
                processes = self.max_processes + (0 if per_run_uid else _tasks_of(uid))
            else:
                processes = self.max_processes + _tasks_of(os.getuid())
            in_r, in_w = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            res_r, res_w = os.pipe()
            payload = job.payload(
                self,
                workdir=str(work),
                drop=[uid, gid] if as_root else None,
                result_fd=res_w,
                processes=processes,
            )
            env = {
                "PATH": _SYSTEM_PATH,
                "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8",
                "HOME": str(work),
                "TMPDIR": str(work),
                "PYTHONHASHSEED": "0",
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONSAFEPATH": "1",
                "PYTHONNOUSERSITE": "1",
                "PYTHONIOENCODING": "utf-8",
                "PYTHONUNBUFFERED": "1",
            }
            flags = ["-s", "-B", "-u"] if self.site_packages else ["-s", "-S", "-B", "-u"]
            try:
                process = subprocess.Popen(
                    [python, *flags, str(harness)],
                    cwd=work,
                    env=env,
                    stdin=in_r,
                    stdout=out_w,
                    stderr=err_w,
                    pass_fds=(res_w,),
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                for fd in (in_r, in_w, out_r, out_w, err_r, err_w, res_r, res_w):
                    os.close(fd)
                raise SandboxError(f"Cannot start the sandbox interpreter {python}: {exc}") from exc
            for fd in (in_r, out_w, err_w, res_w):
                os.close(fd)
            pid = process.pid

            def kill() -> None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)

            run = _supervise(
                self,
                job,
                pid=pid,
                payload=payload,
                stdin_fd=in_w,
                streams={out_r: "stdout", err_r: "stderr", res_r: "result"},
                kill=kill,
                cancel=cancel,
                disk_usage=lambda: _folder_usage(work),
            )
            _, status, usage = os.wait4(pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            pid = None
            run.returncode = process.returncode
            run.cpu_seconds = usage.ru_utime + usage.ru_stime
            notes = ["subprocess", "fresh temporary folder", "minimal environment"]
            if python_note:
                notes.append(python_note)
            if per_run_uid:
                notes.append("per-run uid, swept with SIGKILL afterwards")
            return _build_report(self, job, run, notes)
        finally:
            if pid is not None:  # an error between start and reaping: never leave it running
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            if per_run_uid and uid is not None:
                _kill_uid(uid)
            _remove_tree(root)


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
        from flowkit_prefect.codegen import DockerSandbox

        sandbox = DockerSandbox.load("BLOCK_NAME")  # or DockerSandbox(image="...")
        report = sandbox.run_tests(code, tests)
        ```
    """

    _block_type_name = "Flowkit Docker Sandbox"
    _block_type_slug = "flowkit-docker-sandbox"
    _description = "Runs generated Python against tests in a throwaway, network-less container."
    _documentation_url = "https://github.com/flowkit-prefect/flowkit-prefect#blocks"

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

    def _docker(self) -> tuple[str, dict[str, str]]:
        docker = shutil.which("docker")
        if docker is None:
            raise SandboxError(
                "DockerSandbox needs the docker CLI on the worker's PATH: install it (Debian: "
                "`apt-get install docker.io` or `docker-ce-cli`), or use SubprocessSandbox."
            )
        env = dict(os.environ)  # for the CLI only; the container gets an explicit environment
        if self.docker_host:
            env["DOCKER_HOST"] = self.docker_host
        return docker, env

    def _check_image(self, docker: str, env: dict[str, str]) -> None:
        try:
            probe = subprocess.run(
                [docker, "image", "inspect", "--format", "{{.Id}}", self.image],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxError(f"The docker CLI did not answer: {exc}") from exc
        if probe.returncode == 0:
            return
        message = (probe.stderr or probe.stdout).strip()
        where = self.docker_host or env.get("DOCKER_HOST") or "the default socket"
        if "no such image" in message.lower():
            raise SandboxError(
                f"The image {self.image!r} is not on the Docker engine at {where}; the sandbox "
                "never pulls. Build or load it there (an image with python3 on its PATH)."
            )
        raise SandboxError(
            f"Cannot use the Docker engine at {where}: {message}. Start the engine or set the "
            "block's docker_host."
        )

    def _command(self, docker: str, name: str) -> list[str]:
        cpu = int(self.cpu_seconds + 0.999)
        file_size = self.file_size_mb << 20
        memory = f"{self.memory_mb + 64}m"
        container_env = {
            "HOME": "/sandbox",
            "TMPDIR": "/sandbox",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONSAFEPATH": "1",
            "PYTHONNOUSERSITE": "1",
            "PYTHONIOENCODING": "utf-8",
            "PYTHONUNBUFFERED": "1",
        }
        command = [
            docker,
            "run",
            "--rm",
            "-i",
            "--name",
            name,
            "--hostname",
            "sandbox",
            "--label",
            "flowkit.sandbox=1",
            "--pull",
            "never",
            "--network",
            "none",
            "--ipc",
            "none",
            "--read-only",
            "--tmpfs",
            f"/sandbox:rw,nosuid,nodev,size={self.disk_mb}m,uid={_NOBODY},gid={_NOBODY},mode=0700",
            "--workdir",
            "/sandbox",
            "--user",
            f"{_NOBODY}:{_NOBODY}",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--memory",
            memory,
            "--memory-swap",
            memory,
            "--pids-limit",
            str(self.max_processes + 1),
            "--cpus",
            f"{self.cpus:g}",
            "--ulimit",
            f"cpu={cpu}:{cpu + 1}",
            "--ulimit",
            f"fsize={file_size}:{file_size}",
            "--ulimit",
            "core=0:0",
            "--log-driver",
            "none",
        ]
        for key, value in container_env.items():
            command += ["--env", f"{key}={value}"]
        return [*command, self.image, self.python, "-s", "-S", "-B", "-u", "-c", _harness_source()]

    def _run_job(self, job: _Job, cancel: threading.Event | None) -> SandboxReport:
        docker, env = self._docker()
        self._check_image(docker, env)
        name = f"flowkit-sandbox-{uuid.uuid4().hex}"
        payload = job.payload(
            self, workdir="/sandbox", drop=None, result_fd=None, unshare_net=False
        )
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            process = subprocess.Popen(
                self._command(docker, name),
                env=env,
                stdin=in_r,
                stdout=out_w,
                stderr=err_w,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
                os.close(fd)
            raise SandboxError(f"Cannot start the docker CLI {docker}: {exc}") from exc
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        finished = False

        def remove_container() -> None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(
                    [docker, "rm", "--force", name], env=env, capture_output=True, timeout=30
                )

        def kill() -> None:
            running = not finished and not _has_exited(process.pid)
            # the CLI first: while it is attached and not read, `docker rm` would wait on it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            if running:
                remove_container()

        try:
            run = _supervise(
                self,
                job,
                pid=process.pid,
                payload=payload,
                stdin_fd=in_w,
                streams={out_r: "stdout", err_r: "result"},
                kill=kill,
                cancel=cancel,
            )
            process.wait()
            finished = True
        finally:
            if not finished:
                remove_container()
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        code = process.returncode
        if run.kill_reason is not None:
            remove_container()  # the CLI was killed: make sure the container is gone too
        # `docker run` reports a container killed by signal N as exit status 128 + N
        run.returncode = -(code - 128) if code is not None and code > 128 else code
        if code in (125, 126, 127) and run.first("ready") is None:
            text = run.noise.decode("utf-8", "replace").strip()
            raise SandboxError(f"`docker run` failed (exit {code}): {text}")
        notes = [
            f"docker container from {self.image}",
            "no network",
            "read-only root, tmpfs folder",
            "capabilities dropped, no-new-privileges, uid 65534",
            "memory and pids limits",
        ]
        return _build_report(self, job, run, notes)

"""The code sandbox: functional behaviour, and hostile code that must be contained.

Every hostile test asserts a clear verdict AND that nothing escaped: no leftover processes,
no files outside the sandbox, no secret in the report, no connection to the loopback server.
Some tests switch one layer off (the audit hook, the network namespace) through the private
job to prove the layer underneath holds on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from flowkit_prefect.codegen import (
    CodeSandbox,
    DockerSandbox,
    SandboxReport,
    SubprocessSandbox,
    TestCase,
    arun_in_sandbox,
    register_backend,
    run_in_sandbox,
)
from flowkit_prefect.codegen.sandbox import SandboxJob, backend_for, make_job, run_job
from flowkit_prefect.codegen.sandbox import _subprocess as subprocess_backend
from flowkit_prefect.exceptions import ConfigurationError, SandboxError

IS_ROOT = os.geteuid() == 0
ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = [
    TestCase(name="small", code="assert add(1, 2) == 3"),
    TestCase(name="negative", code="assert add(-1, -1) == -2"),
    TestCase(name="strings", code="assert add('a', 'b') == 'ab'"),
]


@pytest.fixture
def sandbox() -> SubprocessSandbox:
    """Small limits so hostile tests end quickly."""
    return SubprocessSandbox(
        wall_seconds=3.0,
        cpu_seconds=3.0,
        test_timeout_seconds=1.0,
        memory_mb=256,
        output_bytes=16384,
        disk_mb=8,
        file_size_mb=4,
    )


def _stat(pid: str) -> tuple[int, int, int] | None:
    """(ppid, pgrp, session) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[2]), int(fields[3])


def _uid_of(pid: str) -> int | None:
    """The real uid of a live process; None if it is gone or a zombie (dead, awaiting reaping)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if fields.get("State", "").strip().startswith("Z"):
        return None
    return int(fields["Uid"].split()[0])


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Records the PID of every process the sandbox starts and every uid it picks; afterwards,
    fails the test if any process of those sessions/groups or uids is still alive -- after
    killing those leftovers by PID. Only this test's own processes are ever touched."""
    pids: list[int] = []
    real_popen = subprocess.Popen

    class RecordingPopen(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            pids.append(self.pid)

    uids: list[int] = []
    real_pick = subprocess_backend.pick_ids

    def recording_pick(sandbox: SubprocessSandbox) -> tuple[int, int, bool]:
        picked = real_pick(sandbox)
        if picked[2]:  # a per-run uid: nothing else on the machine runs as it
            uids.append(picked[0])
        return picked

    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)
    monkeypatch.setattr(subprocess_backend, "pick_ids", recording_pick)
    yield pids
    leftovers = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        stat = _stat(entry)
        uid = _uid_of(entry)
        in_group = uid is not None and stat is not None and (stat[1] in pids or stat[2] in pids)
        if in_group or (uid is not None and uid in uids):
            leftovers.append(int(entry))
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"sandbox processes survived the run: {leftovers}"


def _whole(report: SandboxReport) -> str:
    return report.model_dump_json()


# -- functional ------------------------------------------------------------------------------


def test_correct_solution_passes_quickly(sandbox: SubprocessSandbox, spawned: list[int]) -> None:
    run_in_sandbox(sandbox, ADD, ADD_TESTS)  # warm up (the interpreter probe is cached per process)
    started = time.perf_counter()
    report = run_in_sandbox(sandbox, ADD, ADD_TESTS)
    elapsed = time.perf_counter() - started
    print(f"trivial run: {elapsed:.3f} s (harness wall {report.wall_seconds:.3f} s)")
    assert report.verdict == "ok", report.detail
    assert report.all_passed and report.passed == 3 and report.failed == 0
    assert [o.name for o in report.outcomes] == ["small", "negative", "strings"]
    assert elapsed < 1.0
    assert any("audit hook" in note for note in report.isolation)


def test_wrong_solution_fails_with_both_sides(sandbox: SubprocessSandbox) -> None:
    report = run_in_sandbox(sandbox, "def add(a, b):\n    return a + b + 1\n", ADD_TESTS[:2])
    assert report.verdict == "ok"
    assert not report.all_passed and report.failed == 2
    assert report.outcomes[0].error is not None
    assert "assert add(1, 2) == 3 failed: add(1, 2) returned 4" in report.outcomes[0].error
    assert report.outcomes[0].error.startswith("AssertionError")


def test_assert_without_comparison_shows_the_line(sandbox: SubprocessSandbox) -> None:
    code = "def is_even(n):\n    return n % 2 == 1\n"
    tests = [TestCase(name="even", code="x = 4\nassert is_even(x)")]
    report = run_in_sandbox(sandbox, code, tests)
    assert report.outcomes[0].error == "AssertionError (test line 2: `assert is_even(x)`)"


def test_syntax_error_names_the_line(sandbox: SubprocessSandbox) -> None:
    report = run_in_sandbox(sandbox, "def add(a, b):\n    return a +\n", ADD_TESTS)
    assert report.verdict == "syntax_error"
    assert "line 2" in report.detail and "SyntaxError" in report.detail
    assert len(report.outcomes) == len(ADD_TESTS)
    assert all(o.error == "not run: the code has a syntax error" for o in report.outcomes)


def test_exception_in_a_test_reports_type_message_and_place(sandbox: SubprocessSandbox) -> None:
    code = "def div(a, b):\n    return a / b\n"
    tests = [
        TestCase(name="ok", code="assert div(4, 2) == 2"),
        TestCase(name="zero", code="div(1, 0)"),
        TestCase(name="custom", code="raise ValueError('bad input 42')"),
    ]
    report = run_in_sandbox(sandbox, code, tests)
    assert report.verdict == "ok"
    assert [o.passed for o in report.outcomes] == [True, False, False]
    assert report.outcomes[1].error == (
        "ZeroDivisionError: division by zero (solution line 2: `return a / b`)"
    )
    assert report.outcomes[2].error is not None
    assert report.outcomes[2].error.startswith("ValueError: bad input 42")


def test_load_error_and_setup(sandbox: SubprocessSandbox) -> None:
    report = run_in_sandbox(sandbox, "import numpy\n", ADD_TESTS[:1])
    assert report.verdict == "load_error"
    assert "ModuleNotFoundError" in report.detail and "numpy" in report.detail
    assert report.outcomes[0].error == "not run: the code raised while loading"
    # setup runs first, in the same namespace: a prelude the code may rely on
    setup = "from typing import List\nSCALE = 10\n"
    code = "def scale(xs: List[int]) -> List[int]:\n    return [x * SCALE for x in xs]\n"
    report = run_in_sandbox(
        sandbox, code, [TestCase(name="s", code="assert scale([1]) == [10]")], setup=setup
    )
    assert report.all_passed, report.outcomes


def test_main_guard_does_not_run_and_tests_are_isolated(sandbox: SubprocessSandbox) -> None:
    code = "VALUE = 1\nif __name__ == '__main__':\n    input()\n"
    tests = [
        TestCase(name="sets", code="leak = 1\nassert VALUE == 1"),
        TestCase(name="sees-no-leak", code="assert 'leak' not in globals()"),
    ]
    report = run_in_sandbox(sandbox, code, tests)
    assert report.all_passed, report.outcomes


def test_invalid_arguments_raise_configuration_error(sandbox: SubprocessSandbox) -> None:
    with pytest.raises(ConfigurationError, match="code is empty"):
        run_in_sandbox(sandbox, "   ", ADD_TESTS)
    with pytest.raises(ConfigurationError, match=r"unique.*small"):
        run_in_sandbox(sandbox, ADD, [ADD_TESTS[0], ADD_TESTS[0]])
    with pytest.raises(ConfigurationError, match="does not compile"):
        run_in_sandbox(sandbox, ADD, [TestCase(name="bad", code="assert (")])
    with pytest.raises(ConfigurationError, match="wall_seconds"):
        SubprocessSandbox(wall_seconds=0)
    with pytest.raises(ConfigurationError, match="memory_mb"):
        SubprocessSandbox(memory_mb=-5)
    assert issubclass(SubprocessSandbox, CodeSandbox)


class _NoBackendSandbox(CodeSandbox):
    """A sandbox block nobody registered a backend for."""

    _block_type_slug = "flowkit-test-no-backend-sandbox"


class _EchoSandbox(CodeSandbox):
    """A sandbox block whose backend only reports the tests it got."""

    _block_type_slug = "flowkit-test-echo-sandbox"


class _LocalSubclass(SubprocessSandbox):
    _block_type_slug = "flowkit-test-subprocess-subclass"


def test_run_in_sandbox_dispatches_by_block_class() -> None:
    def echo(sandbox: _EchoSandbox, job: SandboxJob, cancel: object) -> SandboxReport:
        return SandboxReport(verdict="ok", detail=f"{len(job.tests)} tests", outcomes=[])

    register_backend(_EchoSandbox, echo)
    assert run_in_sandbox(_EchoSandbox(), ADD, ADD_TESTS).detail == "3 tests"
    assert backend_for(_LocalSubclass()) is backend_for(SubprocessSandbox())  # along the MRO
    assert backend_for(DockerSandbox()) is not backend_for(SubprocessSandbox())
    with pytest.raises(ConfigurationError, match=r"No sandbox backend.*_NoBackendSandbox"):
        run_in_sandbox(_NoBackendSandbox(), ADD, ADD_TESTS)
    with pytest.raises(ConfigurationError, match="CodeSandbox block"):
        run_in_sandbox(object(), ADD, ADD_TESTS)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="CodeSandbox subclass"):
        register_backend(str, echo)  # type: ignore[arg-type]


def test_sandbox_blocks_are_configuration_only() -> None:
    """The blocks layer never imports the code that runs them (the layers flow one way)."""
    import ast

    import flowkit_prefect.blocks.sandboxes as blocks_module

    tree = ast.parse(Path(blocks_module.__file__).read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert not [name for name in imported if name and name.startswith("flowkit_prefect.codegen")]
    assert not [name for name in dir(SubprocessSandbox) if "run" in name.lower()]


def test_arun_in_sandbox_and_cancellation(sandbox: SubprocessSandbox, spawned: list[int]) -> None:
    async def scenario() -> tuple[SandboxReport, float]:
        report = await arun_in_sandbox(sandbox, ADD, ADD_TESTS)
        started = time.monotonic()
        with anyio.move_on_after(0.5):
            await arun_in_sandbox(sandbox, "while True:\n    pass\n", ADD_TESTS)
        cancelled_after = time.monotonic() - started
        await anyio.sleep(0.3)  # the worker thread sees the cancel flag and kills the group
        return report, cancelled_after

    report, cancelled_after = asyncio.run(scenario())
    assert report.all_passed
    assert cancelled_after < 1.0
    with pytest.raises(ConfigurationError):  # raised in the caller's task, before any thread
        asyncio.run(arun_in_sandbox(sandbox, "", ADD_TESTS))


# -- hostile ---------------------------------------------------------------------------------


def test_infinite_loop_in_module_times_out(sandbox: SubprocessSandbox, spawned: list[int]) -> None:
    started = time.monotonic()
    report = run_in_sandbox(sandbox, "while True:\n    pass\n", ADD_TESTS)
    elapsed = time.monotonic() - started
    print(f"module infinite loop: {elapsed:.2f} s, {report.detail}")
    assert report.verdict == "timeout"
    assert "wall-time" in report.detail or "CPU-time" in report.detail
    assert elapsed < sandbox.wall_seconds + 1.5
    assert len(report.outcomes) == 3 and not any(o.passed for o in report.outcomes)
    assert all(o.error and o.error.startswith("not run") for o in report.outcomes)


def test_infinite_loop_in_one_test_fails_only_that_test(
    sandbox: SubprocessSandbox, spawned: list[int]
) -> None:
    code = ADD + "def spin():\n    while True:\n        pass\n"
    tests = [ADD_TESTS[0], TestCase(name="spin", code="spin()"), ADD_TESTS[1]]
    started = time.monotonic()
    report = run_in_sandbox(sandbox, code, tests)
    print(f"one spinning test: {time.monotonic() - started:.2f} s")
    assert report.verdict == "ok"
    assert [o.passed for o in report.outcomes] == [True, False, True]
    assert report.outcomes[1].error == "timed out after 1 s"


def test_test_that_ignores_the_alarm_is_killed(
    sandbox: SubprocessSandbox, spawned: list[int]
) -> None:
    spin = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True: pass"
    tests = [ADD_TESTS[0], TestCase(name="spin", code=spin), ADD_TESTS[1]]
    report = run_in_sandbox(sandbox, ADD, tests)
    assert report.verdict == "timeout"
    assert "spin" in report.detail and "could not be interrupted" in report.detail
    assert report.outcomes[0].passed
    assert report.outcomes[1].error is not None and "timed out" in report.outcomes[1].error
    assert (
        report.outcomes[2].error
        == "not run: the sandbox was killed (a test could not be interrupted)"
    )


def test_cpu_limit(spawned: list[int]) -> None:
    sandbox = SubprocessSandbox(wall_seconds=6, cpu_seconds=1, test_timeout_seconds=5)
    started = time.monotonic()
    report = run_in_sandbox(sandbox, "x = 0\nwhile True:\n    x += 1\n", ADD_TESTS[:1])
    print(f"cpu limit: {time.monotonic() - started:.2f} s")
    assert report.verdict == "timeout"
    assert "CPU-time" in report.detail
    assert time.monotonic() - started < 4


@pytest.mark.parametrize(
    "code",
    [
        "x = bytearray(10**10)\n",
        "chunks = []\nwhile True:\n    chunks.append(' ' * 10**6)\n",
    ],
    ids=["one-huge-allocation", "growing-list"],
)
def test_memory_bomb(sandbox: SubprocessSandbox, spawned: list[int], code: str) -> None:
    started = time.monotonic()
    report = run_in_sandbox(sandbox, code, ADD_TESTS[:1])
    print(f"memory bomb: {time.monotonic() - started:.2f} s")
    assert report.verdict == "memory_limit", report.detail
    assert "MemoryError" in report.detail and "256 MB" in report.detail
    # inside a test: that test fails, the next still runs
    tests = [TestCase(name="bomb", code=code), ADD_TESTS[0]]
    report = run_in_sandbox(sandbox, ADD, tests)
    assert report.verdict == "memory_limit"
    assert report.outcomes[0].error is not None
    assert report.outcomes[0].error.startswith("MemoryError")
    assert report.outcomes[1].passed


def test_fork_bomb_is_forbidden(sandbox: SubprocessSandbox, spawned: list[int]) -> None:
    report = run_in_sandbox(sandbox, "import os\nwhile True:\n    os.fork()\n", ADD_TESTS[:1])
    assert report.verdict == "forbidden"
    assert "os.fork" in report.detail
    for code in (
        "import subprocess\nsubprocess.run(['true'])\n",
        "import multiprocessing\nmultiprocessing.Process(target=print).start()\n",
        "import ctypes\n",
        "import _posixsubprocess\n",
        "import os\nos.system('true')\n",
        "import os, signal\nos.kill(os.getppid(), signal.SIGTERM)\n",
        "import os, signal\nsignal.pidfd_send_signal(os.pidfd_open(os.getppid()), 15)\n",
        "import os, resource\nresource.prlimit(os.getppid(), resource.RLIMIT_NOFILE, (3, 3))\n",
        "import sys\ndel sys.modules['posix']\nimport posix\n",
    ):
        assert run_in_sandbox(sandbox, code, ADD_TESTS[:1]).verdict == "forbidden", code


def test_fork_bomb_without_the_audit_hook_is_contained(
    sandbox: SubprocessSandbox, spawned: list[int]
) -> None:
    """With fork allowed, RLIMIT_NPROC caps the bomb and the group kill removes it."""
    code = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    job = make_job(sandbox, code, ADD_TESTS[:1], "")
    job.audit_hook = False
    started = time.monotonic()
    report = run_job(sandbox, job)
    print(f"fork bomb without hook: {time.monotonic() - started:.2f} s, {report.detail}")
    assert report.verdict in ("timeout", "process_limit"), report.detail
    assert time.monotonic() - started < sandbox.wall_seconds + 2


def test_thread_bomb_hits_the_process_limit(sandbox: SubprocessSandbox, spawned: list[int]) -> None:
    code = (
        "import threading, time\n"
        "while True:\n"
        "    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
    )
    report = run_in_sandbox(sandbox, code, ADD_TESTS[:1])
    assert report.verdict == "process_limit", report.detail
    assert "16" in report.detail


def test_worker_environment_does_not_leak(
    sandbox: SubprocessSandbox, spawned: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("FLOWKIT_TEST_SECRET", secret)
    code = (
        "import os\n"
        "def steal():\n"
        "    found = [repr(dict(os.environ))]\n"
        f"    for pid in (os.getppid(), {os.getpid()}, 1):\n"
        "        try:\n"
        "            with open(f'/proc/{pid}/environ', 'rb') as handle:\n"
        "                found.append(handle.read().decode(errors='replace'))\n"
        "        except Exception as exc:\n"
        "            found.append(repr(exc))\n"
        "    return '\\n'.join(found)\n"
        "print(steal())\n"
    )
    tests = [
        TestCase(name="env", code="assert 'FLOWKIT_TEST_SECRET' in steal()"),
        TestCase(name="raise", code="raise RuntimeError(steal())"),
    ]
    report = run_in_sandbox(sandbox, code, tests)
    assert secret not in _whole(report)
    assert "FLOWKIT_TEST_SECRET" not in report.stdout
    assert report.verdict == "forbidden"
    assert "/environ" in report.detail
    if IS_ROOT:  # without the hook, the uid switch alone keeps root's /proc/<pid>/environ shut
        job = make_job(sandbox, code, tests, "")
        job.audit_hook = False
        report = run_job(sandbox, job)
        assert secret not in _whole(report)
        assert "Permission" in report.stdout


def test_writing_outside_the_folder(sandbox: SubprocessSandbox, spawned: list[int]) -> None:
    target = Path(f"/tmp/flowkit-escape-{uuid.uuid4().hex}")
    code = (
        "def write(path):\n"
        "    with open(path, 'w') as handle:\n"
        "        handle.write('escaped')\n"
        "with open('inside.txt', 'w') as handle:\n"  # its own folder is fine
        "    handle.write('ok')\n"
    )
    tests = [
        TestCase(name="tmp", code=f"write({str(target)!r})"),
        TestCase(name="parent", code="write('../escape')"),
        TestCase(name="inside", code="assert open('inside.txt').read() == 'ok'"),
        TestCase(name="remove", code="import os\nos.remove('/etc/hostname')"),
    ]
    try:
        report = run_in_sandbox(sandbox, code, tests)
        assert not target.exists()
        assert report.verdict == "forbidden"
        assert [o.passed for o in report.outcomes] == [False, False, True, False]
        assert "PermissionError" in (report.outcomes[0].error or "")
        assert "outside the sandbox folder" in (report.outcomes[1].error or "")
        assert Path("/etc/hostname").exists()
    finally:
        target.unlink(missing_ok=True)
    leftovers = list(Path(sandbox.tmp_dir or "/tmp").glob("flowkit-sandbox-*"))
    assert not [p for p in leftovers if p.stat().st_mtime > time.time() - 5]


@pytest.fixture
def loopback_server() -> Iterator[tuple[int, list[object]]]:
    """A TCP server on 127.0.0.1 that records every connection it accepts."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, address = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(address)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(timeout=2)
    server.close()


def test_network_is_blocked(
    sandbox: SubprocessSandbox, spawned: list[int], loopback_server: tuple[int, list[object]]
) -> None:
    port, accepted = loopback_server
    code = (
        "import socket\n"
        "def call():\n"
        f"    with socket.create_connection(('127.0.0.1', {port}), timeout=1) as conn:\n"
        "        conn.sendall(b'hello')\n"
    )
    report = run_in_sandbox(sandbox, code, [TestCase(name="connect", code="call()")])
    assert report.verdict == "forbidden"
    assert "network access" in report.detail
    assert "not allowed" in (report.outcomes[0].error or "")
    # the network namespace alone (no audit hook) stops it too
    job = make_job(sandbox, code, [TestCase(name="connect", code="call()")], "")
    job.audit_hook = False
    report = run_job(sandbox, job)
    if any("no network namespace" in note for note in report.isolation):
        pytest.skip("this kernel refused a network namespace; only the audit hook blocks sockets")
    assert not report.outcomes[0].passed
    assert "OSError" in (report.outcomes[0].error or "") or "unreachable" in (
        report.outcomes[0].error or ""
    )
    time.sleep(0.2)
    assert accepted == []


def test_huge_output_is_capped(sandbox: SubprocessSandbox, spawned: list[int]) -> None:
    started = time.monotonic()
    report = run_in_sandbox(sandbox, "while True:\n    print('x' * 10**6)\n", ADD_TESTS[:1])
    print(f"huge output: {time.monotonic() - started:.2f} s")
    assert report.verdict == "output_limit"
    assert len(report.stdout) <= sandbox.output_bytes + 100
    assert "earlier bytes dropped" in report.stdout
    assert time.monotonic() - started < 2


def test_filling_the_disk_is_stopped(sandbox: SubprocessSandbox, spawned: list[int]) -> None:
    code = (
        "i = 0\n"
        "while True:\n"
        "    with open(f'f{i}', 'wb') as handle:\n"
        "        handle.write(b'x' * 2**20)\n"
        "    i += 1\n"
    )
    report = run_in_sandbox(sandbox, code, ADD_TESTS[:1])
    assert report.verdict == "output_limit", report.detail
    assert "8 MB" in report.detail
    report = run_in_sandbox(sandbox, "open('big', 'wb').write(b'x' * (5 * 2**20))\n", ADD_TESTS[:1])
    assert report.verdict == "output_limit", report.detail
    assert "file-size" in report.detail


def test_os_exit_is_a_crash(sandbox: SubprocessSandbox, spawned: list[int]) -> None:
    tests = [ADD_TESTS[0], TestCase(name="exit", code="import os\nos._exit(0)"), ADD_TESTS[1]]
    report = run_in_sandbox(sandbox, ADD, tests)
    assert report.verdict == "crashed"
    assert "exit" in report.detail
    assert [o.passed for o in report.outcomes] == [True, False, False]
    assert report.outcomes[2].error == "not run: the sandbox process died"


def test_forged_results_cannot_break_the_worker(
    sandbox: SubprocessSandbox, spawned: list[int]
) -> None:
    """Same-process code can find the channel and lie (documented); it must not crash us."""
    code = (
        "import gc, json, os\n"
        "channel = next(o for o in gc.get_objects() if type(o).__name__ == '_Channel')\n"
        "for message in (\n"
        "    {'t': 'start', 'i': 'x'},\n"
        "    {'t': 'result', 'i': 0, 'passed': 'yes', 'error': {'a': 1}, 'duration': 'NaN'},\n"
        "    {'t': 'result', 'i': 99, 'passed': True},\n"
        "    {'t': 'result', 'passed': True},\n"
        "    {'t': 'fatal', 'detail': 'forged'},\n"
        "    {'t': 'flag', 'kind': None},\n"
        "    {'t': 'load_failed', 'verdict': 'bogus', 'detail': 123},\n"
        "):\n"
        "    message['n'] = channel.nonce\n"
        "    os.write(channel.fd, (json.dumps(message) + '\\n').encode())\n"
        "os.write(channel.fd, b'not json\\n' * 100)\n"
    )
    report = run_in_sandbox(sandbox, code, ADD_TESTS[:2])
    assert isinstance(report, SandboxReport)
    assert report.verdict == "load_error"  # the forged, invalid verdict is not trusted
    assert len(report.outcomes) == 2
    assert report.outcomes[0].passed is False  # 'yes' is not True


def test_missing_interpreter_is_a_sandbox_error(spawned: list[int]) -> None:
    with pytest.raises(SandboxError):
        run_in_sandbox(SubprocessSandbox(python="/nonexistent/python3"), ADD, ADD_TESTS)


NON_ROOT_SCRIPT = """
import json, os, sys
from flowkit_prefect.codegen import SubprocessSandbox, TestCase, run_in_sandbox
from flowkit_prefect.codegen.sandbox import make_job, run_job
from flowkit_prefect.codegen.sandbox._jobs import harness_source

harness_source()  # read while the venv is still readable
os.setgroups([])
os.setgid(54321)
os.setuid(54321)
sandbox = SubprocessSandbox(
    python=sys.argv[1], wall_seconds=3, cpu_seconds=3, test_timeout_seconds=1, memory_mb=256
)
port, worker = int(sys.argv[2]), int(sys.argv[3])
tests = [TestCase(name="t", code="assert f() == 1")]
codes = {
    "ok": "def f():\\n    return 1\\n",
    "environ": (
        "import os\\ndef f():\\n"
        f"    return [open(f'/proc/{{p}}/environ').read() for p in (os.getppid(), {worker})]\\n"
    ),
    "fork": "import os\\nos.fork()\\n",
    "network": (
        "import socket\\ndef f():\\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=1)\\n"
    ),
    "write": "def f():\\n    open('/tmp/flowkit-escape-nonroot', 'w').write('x')\\n",
}
found = {}
for name, code in codes.items():
    report = run_in_sandbox(sandbox, code, tests)
    found[name] = report.model_dump(mode="json")
job = make_job(sandbox, codes["network"], tests, "")
job.audit_hook = False
found["network-no-hook"] = run_job(sandbox, job).model_dump(mode="json")
print(json.dumps(found))
"""


@pytest.mark.skipif(not IS_ROOT, reason="needs root to become an unprivileged worker")
def test_non_root_worker(
    spawned: list[int],
    loopback_server: tuple[int, list[object]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A worker that is not root: no uid switch, so the audit hook and a user+network
    namespace carry the isolation."""
    import shutil
    import sys

    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 that an unprivileged user can run")
    port, accepted = loopback_server
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("FLOWKIT_TEST_SECRET", secret)
    script = tmp_path / "non_root.py"
    script.write_text(NON_ROOT_SCRIPT)
    script.chmod(0o644)
    tmp_path.chmod(0o755)
    done = subprocess.run(
        [sys.executable, str(script), python, str(port), str(os.getpid())],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert secret not in done.stdout
    found = json.loads(done.stdout)
    assert found["ok"]["all_passed"]
    assert "unprivileged uid" not in " ".join(found["ok"]["isolation"])
    assert found["environ"]["verdict"] == "forbidden"
    assert found["fork"]["verdict"] == "forbidden"
    assert found["network"]["verdict"] == "forbidden"
    assert found["write"]["verdict"] == "forbidden"
    assert not Path("/tmp/flowkit-escape-nonroot").exists()
    no_hook = found["network-no-hook"]
    if not any("no network namespace" in note for note in no_hook["isolation"]):
        assert no_hook["outcomes"][0]["passed"] is False
    time.sleep(0.2)
    assert accepted == []


# -- docker ----------------------------------------------------------------------------------

DOCKER_CACHE = Path(
    os.environ.get(
        "FLOWKIT_TEST_DOCKER_CACHE", Path.home() / ".cache" / "flowkit-prefect" / "docker"
    )
)


@pytest.fixture(scope="module")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(docker host, image): ``FLOWKIT_TEST_DOCKER_HOST`` and ``FLOWKIT_TEST_DOCKER_IMAGE`` when
    set, else a dockerd of this module's own (as the Docker e2e test starts one; docker.io from
    apt when missing) with the debootstrap base image, which has python3. Stopped by its PID."""
    from flowkit_prefect import _docker_stack

    if os.environ.get("FLOWKIT_TEST_DOCKER_HOST"):
        yield (
            os.environ["FLOWKIT_TEST_DOCKER_HOST"],
            os.environ.get("FLOWKIT_TEST_DOCKER_IMAGE", "flowkit-sandbox:py311"),
        )
        return
    try:
        _docker_stack.ensure_engine_installed()
    except _docker_stack.EngineUnavailableError as exc:
        pytest.skip(f"no Docker engine here and none could be installed: {exc}")
    stack = _docker_stack.DockerStack(
        tmp_path_factory.mktemp("sandbox-engine"), DOCKER_CACHE, data_root=DOCKER_CACHE / "engine"
    )
    try:
        print(_docker_stack.start_engine(stack))
        print(_docker_stack.ensure_base_image(stack))
        yield stack.docker_host, _docker_stack.BASE_IMAGE
    finally:
        print(_docker_stack.stop_engine(stack))


@pytest.fixture
def docker_sandbox(docker_engine: tuple[str, str]) -> DockerSandbox:
    host, image = docker_engine
    return DockerSandbox(
        image=image,
        docker_host=host,
        wall_seconds=4.0,
        cpu_seconds=2.0,
        test_timeout_seconds=1.0,
        memory_mb=256,
        output_bytes=16384,
        disk_mb=8,
    )


def _docker_names(host: str) -> list[str]:
    return subprocess.run(
        ["docker", "ps", "-a", "--filter", "label=flowkit.sandbox=1", "--format", "{{.Names}}"],
        env={**os.environ, "DOCKER_HOST": host},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


@pytest.mark.docker
def test_docker_runs_tests(docker_sandbox: DockerSandbox) -> None:
    started = time.perf_counter()
    report = run_in_sandbox(docker_sandbox, ADD, ADD_TESTS)
    print(f"docker trivial run: {time.perf_counter() - started:.2f} s")
    assert report.verdict == "ok", report.detail
    assert report.all_passed
    assert any("docker container" in note for note in report.isolation)
    report = run_in_sandbox(docker_sandbox, "def add(a, b):\n    return a - b\n", ADD_TESTS[:1])
    assert "returned -1" in (report.outcomes[0].error or "")
    code = "import sys\nprint('out')\nprint('err', file=sys.stderr)\nopen('x', 'w').write('x')\n"
    report = run_in_sandbox(
        docker_sandbox, code, [TestCase(name="file", code="assert open('x').read()")]
    )
    assert report.all_passed and report.stdout == "out\nerr\n"  # stderr is merged in Docker
    assert _docker_names(docker_sandbox.docker_host or "") == []


@pytest.mark.docker
def test_docker_contains_hostile_code(
    docker_sandbox: DockerSandbox,
    loopback_server: tuple[int, list[object]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, accepted = loopback_server
    started = time.monotonic()
    report = run_in_sandbox(docker_sandbox, "while True:\n    pass\n", ADD_TESTS[:1])
    print(f"docker infinite loop: {time.monotonic() - started:.2f} s, {report.detail}")
    assert report.verdict == "timeout"
    started = time.monotonic()
    report = run_in_sandbox(docker_sandbox, "import time\ntime.sleep(60)\n", ADD_TESTS[:1])
    print(f"docker sleep: {time.monotonic() - started:.2f} s, {report.detail}")
    assert report.verdict == "timeout" and "wall-time" in report.detail
    assert _docker_names(docker_sandbox.docker_host or "") == []  # killed and removed by name
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
    job = make_job(docker_sandbox, code, ADD_TESTS[:1], "")
    job.audit_hook = False  # --network none alone
    report = run_job(docker_sandbox, job)
    assert report.verdict == "load_error"  # the container's own loopback: refused
    assert "ConnectionRefusedError" in report.detail or "OSError" in report.detail
    assert accepted == []
    report = run_in_sandbox(docker_sandbox, "while True:\n    print('x' * 10**5)\n", ADD_TESTS[:1])
    assert report.verdict == "output_limit"
    assert len(report.stdout) <= docker_sandbox.output_bytes + 100
    report = run_in_sandbox(docker_sandbox, "x = bytearray(10**10)\n", ADD_TESTS[:1])
    assert report.verdict == "memory_limit"
    report = run_in_sandbox(docker_sandbox, "import os\nos.fork()\n", ADD_TESTS[:1])
    assert report.verdict == "forbidden"
    fill = "i = 0\nwhile True:\n    open(f'f{i}', 'wb').write(b'x' * 2**20)\n    i += 1\n"
    report = run_in_sandbox(docker_sandbox, fill, ADD_TESTS[:1])
    assert report.verdict == "output_limit" and "8 MB" in report.detail
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("FLOWKIT_TEST_SECRET", secret)
    report = run_in_sandbox(docker_sandbox, "import os\nprint(dict(os.environ))\n", ADD_TESTS[:1])
    assert secret not in _whole(report)
    assert _docker_names(docker_sandbox.docker_host or "") == []


def test_docker_without_engine_is_a_sandbox_error() -> None:
    sandbox = DockerSandbox(docker_host="unix:///nonexistent/docker.sock")
    with pytest.raises(SandboxError, match=r"[Dd]ocker"):
        run_in_sandbox(sandbox, ADD, ADD_TESTS)


@pytest.mark.parametrize("reason", ["output", "disk"])
def test_a_flood_that_buried_the_ready_message_is_still_the_output_limit(reason: str) -> None:
    """A flood of output can reach the parent before the harness's "ready" line is read (seen
    in Docker under load): the run hit the limit, it is not a harness that never started."""
    from flowkit_prefect.codegen.sandbox._report import build_report
    from flowkit_prefect.codegen.sandbox._supervise import Observed

    sandbox = SubprocessSandbox()
    job = make_job(sandbox, "while True:\n    print('x' * 10**5)\n", ADD_TESTS[:1], "")
    report = build_report(sandbox, job, Observed(kill_reason=reason, returncode=-9), [])
    assert report.verdict == "output_limit"
    assert "more than" in report.detail and "killed" in report.detail
    with pytest.raises(SandboxError, match="wall-time limit"):
        build_report(sandbox, job, Observed(kill_reason="wall", returncode=-9), [])

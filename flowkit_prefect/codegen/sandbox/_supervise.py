"""Supervision of one sandbox process: feed it the job, drain its output, enforce the clocks.

Both backends hand their process's pipes to :func:`supervise`, so the wall clock, the per-test
limit, the output cap, the disk check and cancellation behave the same in every sandbox.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowkit_prefect.blocks.sandboxes import CodeSandbox
from flowkit_prefect.codegen.sandbox._jobs import SandboxJob
from flowkit_prefect.codegen.sandbox._proc import has_exited

__all__ = ["Observed", "supervise"]

_POLL_SECONDS = 0.05
_DISK_CHECK_SECONDS = 0.25
_DRAIN_SECONDS = 0.5
_NOISE_BYTES = 8192


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
class Observed:
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


def supervise(
    sandbox: CodeSandbox,
    job: SandboxJob,
    *,
    pid: int,
    payload: bytes,
    stdin_fd: int,
    streams: dict[int, str],
    kill: Callable[[], None],
    cancel: threading.Event | None,
    disk_usage: Callable[[], int] | None = None,
) -> Observed:
    """Feed the job, drain output (capped) and results, enforce the clocks; kill when needed.

    Always kills the process (group) before returning and closes ``stdin_fd`` and every
    descriptor in ``streams``; the caller only reaps the process.
    """
    run = Observed(stdout=_Tail(sandbox.output_bytes), stderr=_Tail(sandbox.output_bytes))
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
            if exited_at is None and has_exited(pid):
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

"""The subprocess backend: a fresh local interpreter per run, under limits (``SubprocessSandbox``).

Starts ``python -s -S harness.py`` in a new temporary folder with a minimal environment, as a
fresh unprivileged uid when the worker is root, hands its pipes to the shared supervisor and
removes everything afterwards, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from flowkit_prefect.blocks.sandboxes import SubprocessSandbox
from flowkit_prefect.codegen.sandbox._jobs import SandboxJob, harness_source, sandbox_env
from flowkit_prefect.codegen.sandbox._proc import (
    NOBODY,
    SYSTEM_PATH,
    folder_usage,
    id_mapped,
    kill_uid,
    remove_tree,
    tasks_of,
    usable_by_others,
)
from flowkit_prefect.codegen.sandbox._report import build_report
from flowkit_prefect.codegen.sandbox._supervise import supervise
from flowkit_prefect.codegen.sandbox._types import SandboxReport
from flowkit_prefect.exceptions import ConfigurationError, SandboxError

__all__ = ["pick_ids", "run_subprocess"]

_UID_BASE = 1_500_000_000  # per-run uids: far above real users and rootless-container ranges
_UID_SPAN = 10_000_000


def pick_ids(sandbox: SubprocessSandbox) -> tuple[int, int, bool]:
    """(uid, gid, is_per_run) for the child when the worker is root."""
    if sandbox.sandbox_uid is not None:
        return sandbox.sandbox_uid, sandbox.sandbox_uid, False
    uid = _UID_BASE + random.randrange(_UID_SPAN)
    if id_mapped("uid", uid) and id_mapped("gid", uid):
        return uid, uid, True
    return NOBODY, NOBODY, False


def _interpreter(sandbox: SubprocessSandbox, as_root: bool) -> tuple[str, str | None]:
    """The interpreter to run, and a note when it is not the worker's own."""
    if not as_root:
        return sandbox.python or sys.executable, None
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = (
        [sandbox.python]
        if sandbox.python
        else [
            sys.executable,
            shutil.which(version, path=SYSTEM_PATH),
            shutil.which("python3", path=SYSTEM_PATH),
        ]
    )
    for candidate in candidates:
        if candidate and usable_by_others(candidate):
            note = None if candidate == sys.executable else f"interpreter {candidate}"
            return candidate, note
    raise SandboxError(
        f"No Python interpreter the unprivileged sandbox user can run (tried "
        f"{', '.join(c for c in candidates if c)}). Install a system python3 (e.g. `apt-get "
        "install python3`) or set the block's `python` to a world-readable interpreter."
    )


def run_subprocess(
    sandbox: SubprocessSandbox, job: SandboxJob, cancel: threading.Event | None
) -> SandboxReport:
    """Run a checked job in a fresh local interpreter (see ``SubprocessSandbox``)."""
    as_root = os.geteuid() == 0
    uid = gid = None
    per_run_uid = False
    if as_root:
        uid, gid, per_run_uid = pick_ids(sandbox)
    python, python_note = _interpreter(sandbox, as_root)
    try:
        root = Path(tempfile.mkdtemp(prefix="flowkit-sandbox-", dir=sandbox.tmp_dir))
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot create a sandbox folder in {sandbox.tmp_dir or tempfile.gettempdir()!r}: "
            f"{exc}. Point the block's tmp_dir at a writable folder."
        ) from exc
    pid: int | None = None
    try:
        os.chmod(root, 0o711)
        work = root / "work"
        work.mkdir(mode=0o700)
        harness = root / "harness.py"
        harness.write_text(harness_source(), encoding="utf-8")
        harness.chmod(0o644)
        if uid is not None and gid is not None:  # as root
            os.chown(work, uid, gid)
            processes = sandbox.max_processes + (0 if per_run_uid else tasks_of(uid))
        else:
            processes = sandbox.max_processes + tasks_of(os.getuid())
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        res_r, res_w = os.pipe()
        payload = job.payload(
            sandbox,
            workdir=str(work),
            drop=[uid, gid] if as_root else None,
            result_fd=res_w,
            processes=processes,
        )
        env = {"PATH": SYSTEM_PATH, **sandbox_env(str(work))}
        flags = ["-s", "-B", "-u"] if sandbox.site_packages else ["-s", "-S", "-B", "-u"]
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

        run = supervise(
            sandbox,
            job,
            pid=pid,
            payload=payload,
            stdin_fd=in_w,
            streams={out_r: "stdout", err_r: "stderr", res_r: "result"},
            kill=kill,
            cancel=cancel,
            disk_usage=lambda: folder_usage(work),
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
        return build_report(sandbox, job, run, notes)
    finally:
        if pid is not None:  # an error between start and reaping: never leave it running
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if per_run_uid and uid is not None:
            kill_uid(uid)
        remove_tree(root)

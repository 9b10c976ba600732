"""Process and file-system helpers of the sandbox backends: /proc lookups, uids, folder usage.

Kept apart from the backends so each backend reads as "start, supervise, report", and so the
Linux-specific details (``/proc``, uid maps, ``waitid``) live in one place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect.logging import get_logger

logger = get_logger("flowkit.sandbox")

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
NOBODY = 65534
_DISK_MAX_ENTRIES = 20_000


def has_exited(pid: int) -> bool:
    """True once ``pid`` has exited; leaves it unreaped so its process group stays valid."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _proc_status(pid: str) -> dict[str, str]:
    fields = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="utf-8") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def tasks_of(uid: int) -> int:
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


def kill_uid(uid: int) -> None:
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


def id_mapped(kind: str, value: int) -> bool:
    """True when ``value`` is a valid uid/gid in this user namespace."""
    try:
        text = Path(f"/proc/self/{kind}_map").read_text()
    except OSError:
        return value == NOBODY
    for line in text.splitlines():
        inside, _, count = (int(x) for x in line.split())
        if inside <= value < inside + count:
            return True
    return False


_usable: dict[str, bool] = {}


def usable_by_others(python: str) -> bool:
    """Whether an unprivileged uid can start ``python`` and import the stdlib (cached)."""
    if python not in _usable:
        try:
            probe = subprocess.run(
                [python, "-s", "-S", "-c", "import ast, json, math, resource, signal, ctypes"],
                user=NOBODY,
                group=NOBODY,
                extra_groups=[],
                cwd="/",
                env={"PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8"},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
            )
            _usable[python] = probe.returncode == 0
        except (OSError, subprocess.SubprocessError):
            _usable[python] = False
    return _usable[python]


def folder_usage(folder: Path) -> int:
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


def remove_tree(path: Path) -> None:
    """Remove a sandbox folder, making read-only parts writable first; warn on leftovers."""

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

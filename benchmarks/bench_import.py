"""Import cost of flowkit-prefect against `import prefect`, each in a cold interpreter.

Prefect imports every installed collection when it loads a block (our entry point is
`flowkit_prefect.blocks`), so every flow-run process, worker and block load pays for what
these imports pull in. Each statement runs in a new interpreter, best of N, and the ratios are
against `import prefect` measured in the same run.

    python benchmarks/bench_import.py [--repeat 3]

Target: `import flowkit_prefect` <= 1.3 x `import prefect`; the blocks entry point too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from _common import report

BASELINE = "import prefect"
CASES = [
    ("import flowkit_prefect", 1.3),
    ("import flowkit_prefect.blocks", 1.3),  # what Prefect's collection loading imports
    ("from flowkit_prefect import invoke_llm", None),  # the LLM layer: + langchain-core
    ("from flowkit_prefect import rag_answer", None),  # a template: + qdrant-client
    ("from flowkit_prefect import validated_pipeline", None),  # + pandas, Great Expectations
]
TIMER = "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"


def cold_seconds(statement: str, repeat: int) -> float:
    """Best wall time of ``statement`` over ``repeat`` fresh interpreters."""
    times = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", TIMER.format(stmt=statement)],
            capture_output=True,
            text=True,
            check=True,
            env={
                "HF_HUB_OFFLINE": "1",
                "PATH": "/usr/bin:/bin",
                "DO_NOT_TRACK": "1",
                # PYTHONPATH=<old checkout> measures another version of the package
                **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
            },
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="cold interpreters per statement")
    args = parser.parse_args()
    cold_seconds(BASELINE, 1)  # warm the OS file cache for both sides alike
    base = cold_seconds(BASELINE, args.repeat)
    print(f"{BASELINE:<50} {base:6.3f} s   1.00 x (baseline)")
    failed = False
    for statement, target in CASES:
        seconds = cold_seconds(statement, args.repeat)
        ratio = seconds / base
        verdict = ""
        if target is not None:
            met = ratio <= target
            failed |= not met
            verdict = f"target <= {target}: {'MET' if met else 'NOT MET'}"
        print(f"{statement:<50} {seconds:6.3f} s {ratio:6.2f} x  {verdict}")
        report(
            f"import time: `{statement}` / `{BASELINE}`",
            seconds,
            base,
            ratio,
            f"<= {target}" if target is not None else None,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

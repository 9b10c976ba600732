"""The layers hold: import-linter's contract in pyproject.toml (also run by `make lint`), and no
package module grows past what one job needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flowkit_prefect"
# One standard-library-only file is shipped into the sandbox whole (its docstring says why).
ONE_FILE_BY_DESIGN = {PACKAGE / "codegen" / "sandbox" / "_harness.py"}


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_package_module_is_over_500_lines() -> None:
    sizes = {
        path.relative_to(ROOT): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
        if path not in ONE_FILE_BY_DESIGN
    }
    too_long = {str(path): lines for path, lines in sizes.items() if lines > 500}
    assert not too_long, f"split these by job: {too_long}"

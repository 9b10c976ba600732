"""Show a suite draft: the markdown artifact a reviewer reads, and the draft file's path.

A draft file is only ever written as ``<name>.draft.json`` and never over a file that is not a
draft, so a reviewed suite cannot be clobbered by a new draft.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from flowkit_prefect._artifacts import key_slug
from flowkit_prefect.exceptions import ConfigurationError
from flowkit_prefect.validation._draft_models import SuiteDraft

DRAFT_ARTIFACT_PREFIX = "validation-suite-draft-"
DRAFT_BANNER = "DRAFT — review before use"


def draft_artifact_key(name: str) -> str:
    """The markdown artifact key of a suite's draft: ``validation-suite-draft-<slug>``."""
    slug = key_slug(name, "")[:60].strip("-")
    return DRAFT_ARTIFACT_PREFIX + (slug or "suite")


def draft_target(output_path: str | Path, name: str) -> Path:
    """The ``<name>.draft.json`` file to write; refuses anything but a draft file."""
    path = Path(output_path)
    if path.name.endswith(".json"):
        if not path.name.endswith(".draft.json"):
            raise ConfigurationError(
                f"output_path {str(path)!r} is a JSON file that is not a draft; pass a folder "
                "(the draft is written there as '<name>.draft.json') or a '*.draft.json' path."
            )
        target = path
    else:
        if path.exists() and not path.is_dir():
            raise ConfigurationError(f"output_path {str(path)!r} exists and is not a folder.")
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "suite"
        target = path / f"{stem}.draft.json"
    if target.exists() and not _is_draft_file(target):
        raise ConfigurationError(
            f"{str(target)!r} exists and is not a suite draft written by draft_suite; it is "
            "never overwritten. Move it away or pass another output_path."
        )
    return target


def _is_draft_file(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and (data.get("meta") or {}).get("flowkit_status") == "draft"


def _md(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text.replace("|", "\\|").replace("\n", " ")


def draft_markdown(draft: SuiteDraft, rows: int) -> str:
    """The draft as a markdown report: accepted and rejected proposals, sample failures flagged."""
    lines = [
        f"# {DRAFT_BANNER}: suite `{draft.name}`",
        "",
        f"Drafted by `{draft.model}` from a sample of {rows} rows. This suite has **not** been "
        "applied to anything; a person must review it before use.",
        "",
        f"## Accepted ({len(draft.accepted)})",
        "",
    ]
    if draft.accepted:
        lines += [
            "| # | Expectation | Kwargs | Severity | Sample | Rationale |",
            "|---|---|---|---|---|---|",
        ]
        for i, e in enumerate(draft.accepted, 1):
            sample = "passes" if e.sample_passes else f"⚠️ **fails**: {_md(e.sample_note)}"
            lines.append(
                f"| {i} | `{e.type}` | `{_md(e.kwargs)}` | {e.severity} | {sample} "
                f"| {_md(e.rationale)} |"
            )
        if any(not e.sample_passes for e in draft.accepted):
            lines += ["", "⚠️ The sample itself fails the flagged expectations: check them."]
    else:
        lines.append("No proposed expectation was accepted: **the draft suite is empty**.")
    lines += ["", f"## Rejected ({len(draft.rejected)})", ""]
    if draft.rejected:
        lines += ["| Expectation | Kwargs | Reason |", "|---|---|---|"]
        lines += [
            f"| `{_md(r.type)}` | `{_md(r.kwargs)}` | {_md(r.reason)} |" for r in draft.rejected
        ]
    else:
        lines.append("None.")
    if draft.path:
        lines += ["", f"Draft written to `{draft.path}`."]
    return "\n".join(lines) + "\n"

"""Prefect artifact keys and table data: what the server accepts, and what it hands back."""

from __future__ import annotations

import json
import re
from typing import Any


def key_slug(text: str, fallback: str) -> str:
    """``text`` as lowercase letters, digits and dashes (all an artifact key may hold), or
    ``fallback`` when nothing is left."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or fallback


def table_rows(data: Any) -> list[dict[str, Any]]:
    """A table artifact's rows: the client returns them as JSON text or already decoded."""
    return json.loads(data) if isinstance(data, str) else data

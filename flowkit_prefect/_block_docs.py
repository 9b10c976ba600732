"""Save the declarative block documents in ``blocks/*.yaml`` to the Prefect server.

Each file holds one document::

    block_type: flowkit-qdrant-store     # the block type slug
    name: default                        # the document name deployments refer to
    data:
      location: ${FLOWKIT_DATA_DIR:-./.flowkit/data}/qdrant

String values may use ``${VAR}`` and ``${VAR:-default}``; a value that then starts with ``./``
is made absolute against the folder the command runs in (the project), so every worker process
finds the same files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from prefect.blocks.core import Block
from prefect.utilities.dispatch import lookup_type

import flowkit_prefect.blocks  # noqa: F401  (registers every block type, sandboxes too)
from flowkit_prefect.exceptions import ConfigurationError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, base: Path) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, base) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found:
            return found
        if default is None:
            raise ConfigurationError(
                f"Block documents use ${{{name}}} but it is not set; export it or give a "
                f"default as ${{{name}:-value}}."
            )
        return default

    expanded = _VAR.sub(substitute, value)
    if expanded.startswith("./"):
        return str((base / expanded).resolve())
    return expanded


def read_block_documents(
    folder: Path, base: Path | None = None
) -> list[tuple[type[Block], str, dict[str, Any]]]:
    """Parse every ``*.yaml`` in ``folder`` into (block class, document name, data)."""
    if not folder.is_dir():
        raise ConfigurationError(f"Block documents folder {str(folder)!r} does not exist.")
    documents = []
    for path in sorted(folder.glob("*.y*ml")):
        try:
            spec = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{path}: invalid YAML: {exc}") from exc
        slug, name = spec.get("block_type"), spec.get("name")
        if not slug or not name:
            raise ConfigurationError(f"{path}: needs 'block_type' (a slug) and 'name'.")
        try:
            cls = lookup_type(Block, slug)
        except KeyError as exc:
            raise ConfigurationError(
                f"{path}: unknown block type {slug!r}; is the package that defines it installed?"
            ) from exc
        documents.append((cls, str(name), _expand(spec.get("data") or {}, base or Path.cwd())))
    return documents


def save_block_documents(folder: Path, overwrite: bool = True) -> list[str]:
    """Register the block types and save each document; returns the saved references."""
    saved = []
    for cls, name, data in read_block_documents(folder):
        try:
            block = cls(**data)
        except Exception as exc:
            raise ConfigurationError(
                f"Block document {cls.get_block_type_slug()}/{name}: {exc}"
            ) from exc
        block.save(name, overwrite=overwrite)
        saved.append(f"{cls.get_block_type_slug()}/{name}")
    return saved

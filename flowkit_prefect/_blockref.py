"""Resolve a block given as an object or as a ``"<block-type-slug>/<name>"`` reference."""

from __future__ import annotations

from typing import TypeVar, cast

from prefect.blocks.core import Block

from flowkit_prefect.exceptions import ConfigurationError

B = TypeVar("B", bound=Block)


def resolve_block(ref: str | Block, expected: type[B]) -> B:
    """Load ``ref`` (unless it already is a block) and check it is an ``expected`` block."""
    if isinstance(ref, Block):
        block: Block = ref
    else:
        if not isinstance(ref, str) or "/" not in ref:
            raise ConfigurationError(
                f"Block reference {ref!r} must look like '<block-type-slug>/<block-name>', "
                "e.g. 'flowkit-qdrant-store/default'."
            )
        try:
            block = cast(Block, Block.load(ref, validate=True))  # sync call: not awaitable
        except ValueError as exc:
            raise ConfigurationError(
                f"No saved block {ref!r} on the Prefect server ({exc}). Save the default blocks "
                "with `flowkit blocks save` (part of `make run`), or create it in the UI under "
                "Blocks."
            ) from exc
    if not isinstance(block, expected):
        raise ConfigurationError(
            f"Block {ref!r} is a {type(block).__name__}, but a {expected.__name__} is needed here."
        )
    return block

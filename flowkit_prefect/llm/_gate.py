"""The model-call slot: a fan-out's concurrency cap and rate limits, held around the model call.

A fan-out puts a ``CallGate`` in a context variable; ``call_chat_model`` holds one of its slots
only while the model answers, not while Prefect records the task run, so the orchestration of
one call overlaps the model time of the others. The gate is not a task parameter, so it never
reaches the cache key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from contextvars import ContextVar

from langchain_core.messages import BaseMessage

HANDOVER_SECONDS = 0.01


def estimate_tokens(messages: Sequence[BaseMessage] | str) -> int:
    """Rough prompt size for a tokens-per-minute limit: characters / 4, at least 1."""
    text = messages if isinstance(messages, str) else " ".join(m.text for m in messages)
    return max(1, len(text) // 4)


async def take_rate_limits(
    requests_limit: str | None, tokens_limit: str | None, prompt: Sequence[BaseMessage] | str
) -> None:
    """Wait until the shared rate limits let one more call (of this prompt's size) through."""
    if not (requests_limit or tokens_limit):
        return
    from prefect.concurrency.asyncio import rate_limit

    if requests_limit:
        await rate_limit(requests_limit, occupy=1, strict=True)
    if tokens_limit:
        await rate_limit(tokens_limit, occupy=estimate_tokens(prompt), strict=True)


class CallGate:
    """At most ``capacity`` model calls at once in this gate; optional shared rate limits.

    ``requests_limit`` / ``tokens_limit`` name Prefect global concurrency limits with slot decay
    (rate limits shared by every worker); each call takes 1 request and its estimated tokens.
    """

    def __init__(
        self,
        capacity: int,
        *,
        requests_limit: str | None = None,
        tokens_limit: str | None = None,
    ) -> None:
        self._semaphore = asyncio.Semaphore(capacity)
        self.requests_limit = requests_limit
        self.tokens_limit = tokens_limit

    @contextlib.asynccontextmanager
    async def slot(self, messages: Sequence[BaseMessage]) -> AsyncIterator[None]:
        """Hold one slot (after the rate limits let this call through) while the body runs."""
        async with self._semaphore:
            await take_rate_limits(self.requests_limit, self.tokens_limit, messages)
            yield
        # Step aside briefly so the call that was waiting for this slot gets into the model
        # before this task run's bookkeeping takes the event loop: when a wave of calls ends at
        # once, the next wave would otherwise start only after all of that work (~6 ms a call).
        await asyncio.sleep(HANDOVER_SECONDS)


_CURRENT: ContextVar[CallGate | None] = ContextVar("flowkit_llm_call_gate", default=None)


@contextlib.contextmanager
def use_gate(gate: CallGate | None) -> Iterator[CallGate | None]:
    """Model calls started in this context (and tasks created from it) go through ``gate``
    (``None``: no gate, e.g. in a task run that another process or thread started)."""
    token = _CURRENT.set(gate)
    try:
        yield gate
    finally:
        _CURRENT.reset(token)


@contextlib.asynccontextmanager
async def model_call_slot(messages: Sequence[BaseMessage]) -> AsyncIterator[None]:
    """A slot of the current gate around one model call; no wait outside a fan-out."""
    gate = _CURRENT.get()
    if gate is None:
        yield
        return
    async with gate.slot(messages):
        yield

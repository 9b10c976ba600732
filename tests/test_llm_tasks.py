"""LLM tasks for real on Prefect: retries only on transient faults, timeouts that cancel,
cache replays, structured repair, fallback, usage and budgets. Only the provider is fake."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest
from prefect import flow
from prefect.artifacts import Artifact
from pydantic import BaseModel

from flowkit_prefect.exceptions import BudgetExceededError, ModelOutputError
from flowkit_prefect.llm import Budget, LLMResult, invoke_llm, llm_cache_key, track_usage
from flowkit_prefect.testing import FakeChatModel, FlakyChatModel

FAST = {"retry_delay_seconds": 0.05, "retry_jitter_factor": 0.0}


class RateLimitError(Exception):
    """Named like the OpenAI SDK's rate-limit error."""

    status_code = 429


class AuthenticationError(Exception):
    status_code = 401


class City(BaseModel):
    name: str
    population: int


def _unique(text: str) -> str:
    return f"{text} ({uuid.uuid4().hex[:8]})"  # a prompt no earlier test has cached


def test_transient_faults_are_retried_and_the_call_completes(harness: str) -> None:
    model = FlakyChatModel(
        responses=["done"], failures=[RateLimitError("slow down"), TimeoutError("read"), None]
    )

    @flow
    def run() -> str:
        return invoke_llm(model, _unique("hi"), config={**FAST, "cache": False}).text

    assert run() == "done"
    assert model.attempts == 3


def test_non_transient_errors_fail_at_once(harness: str) -> None:
    model = FlakyChatModel(failures=[AuthenticationError("bad key")] * 5)

    @flow
    def run() -> str:
        return invoke_llm(model, _unique("hi"), config={**FAST, "cache": False}).text

    started = time.monotonic()
    with pytest.raises(AuthenticationError):
        run()
    assert model.attempts == 1  # no retry storm
    assert time.monotonic() - started < 10


def test_timeout_cancels_a_hung_call(harness: str) -> None:
    model = FlakyChatModel(hang_seconds=60)

    @flow
    def run() -> str:
        return invoke_llm(
            model,
            _unique("hi"),
            config={**FAST, "cache": False, "timeout_seconds": 1, "retries": 1},
        ).text

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run()
    assert time.monotonic() - started < 20


def test_rerun_replays_from_cache_without_calling_the_model(harness: str) -> None:
    prompt = _unique("What is Prefect?")
    model = FakeChatModel(responses=["An orchestrator."])

    @flow
    def run() -> tuple[str, bool]:
        with track_usage():
            result = invoke_llm(model, prompt)
        return result.text, result.cached

    assert run() == ("An orchestrator.", False)
    assert run() == ("An orchestrator.", True)
    assert len(model.calls) == 1
    usage = Artifact.get("flowkit-llm-usage")
    assert usage is not None
    rows = json.loads(usage.data) if isinstance(usage.data, str) else usage.data
    assert rows == [
        {
            "model": "fake-chat-model",
            "task": "llm-call",
            "calls": 1,
            "cached": 1,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost": 0.0,
        }
    ]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (RateLimitError("429"), True),
        (TimeoutError("t"), True),
        (ConnectionResetError("reset"), True),
        (httpx.ConnectError("refused"), True),
        (AuthenticationError("401"), False),
        (ValueError("bad request"), False),
    ],
)
def test_transient_classification(error: Exception, transient: bool) -> None:
    from flowkit_prefect._retry import is_transient

    assert is_transient(error) is transient


def test_cache_key_ignores_secrets_and_tracks_what_matters() -> None:
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    messages = [HumanMessage("hi")]
    a = ChatOpenAI(model="m", api_key="sk-one", base_url="http://127.0.0.1:9/v1")
    b = ChatOpenAI(model="m", api_key="sk-two", base_url="http://127.0.0.1:9/v1")
    hotter = ChatOpenAI(
        model="m", api_key="sk-one", temperature=0.9, base_url="http://127.0.0.1:9/v1"
    )
    assert llm_cache_key(a, messages) == llm_cache_key(b, messages)
    assert llm_cache_key(a, messages) != llm_cache_key(hotter, messages)
    assert llm_cache_key(a, messages) != llm_cache_key(a, [HumanMessage("hello")])


def test_structured_output_is_repaired_within_bounds(harness: str) -> None:
    model = FakeChatModel(
        responses=["not json", '{"name": "Tartu"}', '{"name": "Tartu", "population": 97000}']
    )

    @flow
    def run():
        return invoke_llm(model, _unique("A city?"), output_type=City, config={"cache": False})

    result = run()
    assert City.model_validate(result.parsed) == City(name="Tartu", population=97000)
    assert result.repairs == 2
    assert "not valid" in model.calls[1][-1].text  # the error went back to the model

    stubborn = FakeChatModel(responses=["still not json"])

    @flow
    def run_stubborn():
        return invoke_llm(
            stubborn,
            _unique("A city?"),
            output_type=City,
            config={"cache": False, "structured_repairs": 1},
        )

    with pytest.raises(ModelOutputError, match="after 2 attempts"):
        run_stubborn()
    assert len(stubborn.calls) == 2


def test_fallback_chain_moves_on_after_transient_failures(harness: str) -> None:
    primary = FlakyChatModel(model_name="primary", failures=[RateLimitError("busy")] * 10)
    backup = FakeChatModel(model_name="backup", responses=["from backup"])

    @flow
    def run():
        return invoke_llm(
            [primary, backup], _unique("hi"), config={**FAST, "retries": 1, "cache": False}
        )

    result = run()
    assert result.text == "from backup" and result.model == "backup"
    assert primary.attempts == 2


def test_usage_table_and_budget(harness: str) -> None:
    from flowkit_prefect import OpenAIChatModel

    model = FakeChatModel(responses=["one two three four"])

    @flow
    def run() -> int:
        calls = 0
        with track_usage(Budget(max_tokens=30)):
            try:
                for i in range(10):
                    invoke_llm(model, _unique(f"count {i}"), config={"cache": False})
                    calls += 1
            except BudgetExceededError:
                return calls
        return calls

    made = run()
    assert 0 < made < 10
    usage = Artifact.get("flowkit-llm-usage")
    assert usage is not None
    rows = json.loads(usage.data) if isinstance(usage.data, str) else usage.data
    assert rows[0]["calls"] == made and rows[0]["output_tokens"] == 4 * made

    priced = OpenAIChatModel(model="x", input_price_per_1k=1.0, output_price_per_1k=2.0)
    assert priced.cost(500, 250) == pytest.approx(1.0)


class SlowChatModel(FakeChatModel):
    """Answers after a fixed latency and records the highest number of calls in flight."""

    latency: float = 0.2
    in_flight: int = 0
    peak: int = 0

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        import asyncio

        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
            return self._generate(messages, stop, None, **kwargs)
        finally:
            self.in_flight -= 1


def test_fan_out_respects_the_shared_concurrency_cap(harness: str) -> None:
    from flowkit_prefect.llm import map_llm

    model = SlowChatModel(responses=["ok"])
    prompts = [_unique(f"item {i}") for i in range(12)]

    @flow
    def run() -> list[str]:
        results = map_llm(
            model,
            prompts,
            max_concurrency=3,
            limit_name=f"t-{uuid.uuid4().hex[:6]}",
            config={"cache": False},
        )
        return [r.text for r in results]

    assert run() == ["ok"] * 12
    # At most the limit's 3 slots; not always all 3, since a lease request can meet a busy
    # SQLite server and back off.
    assert 1 <= model.peak <= 3


def test_two_fan_outs_share_one_global_cap(harness: str) -> None:
    """Two fan-outs at once on the same limit name: together never more calls than its slots."""
    from flowkit_prefect.llm import amap_llm

    model = SlowChatModel(responses=["ok"], latency=0.1)
    name = f"t-{uuid.uuid4().hex[:6]}"

    @flow
    async def run() -> list[list[LLMResult]]:
        return await asyncio.gather(
            *(
                amap_llm(
                    model,
                    [_unique(f"{side} {i}") for i in range(10)],
                    max_concurrency=4,
                    limit_name=name,
                    config={"cache": False},
                )
                for side in ("a", "b")
            )
        )

    assert [len(results) for results in asyncio.run(run())] == [10, 10]
    assert 1 <= model.peak <= 4


def test_in_process_cap_and_timeout_cover_the_model_call_only(harness: str) -> None:
    """More task runs than slots are started, yet at most ``max_concurrency`` calls run at
    once, and a call's timeout does not count its wait for a slot."""
    from flowkit_prefect.llm import map_llm

    model = SlowChatModel(responses=["ok"], latency=0.6)

    @flow
    def run() -> list[str]:
        results = map_llm(
            model,
            [_unique(f"item {i}") for i in range(4)],
            max_concurrency=1,
            config={"cache": False, "retries": 0, "timeout_seconds": 1.0},
        )
        return [r.text for r in results]

    assert run() == ["ok"] * 4
    assert model.peak == 1


def test_fan_out_survives_a_flaky_provider(harness: str) -> None:
    """30% of calls fail with rate-limit or timeout errors; every result still arrives."""
    from flowkit_prefect.llm import map_llm

    failures = [
        RateLimitError("busy") if i % 10 in (1, 4) else TimeoutError("t") if i % 10 == 7 else None
        for i in range(40)
    ]
    model = FlakyChatModel(
        respond=lambda messages, **_: messages[-1].text.upper(), failures=failures
    )
    prompts = [f"p{i} {uuid.uuid4().hex[:6]}" for i in range(20)]

    @flow
    def run() -> list[str]:
        return [
            r.text
            for r in map_llm(
                model, prompts, max_concurrency=4, config={**FAST, "cache": False, "retries": 5}
            )
        ]

    assert run() == [p.upper() for p in prompts]
    assert model.attempts > len(prompts)


def test_usage_table_is_published_from_an_async_flow(harness: str) -> None:
    """``track_usage`` in an async flow publishes the table too (it once made a coroutine that
    nobody awaited, so async flows had no usage artifact)."""
    from flowkit_prefect.llm import ainvoke_llm

    key = _unique("async usage")

    @flow
    async def run() -> None:
        with track_usage():
            await ainvoke_llm(FakeChatModel(responses=["one two three"]), key)

    asyncio.run(run())
    usage = Artifact.get("flowkit-llm-usage")
    assert usage is not None and usage.flow_run_id is not None
    rows = json.loads(usage.data) if isinstance(usage.data, str) else usage.data
    assert rows[0]["calls"] == 1 and rows[0]["output_tokens"] == 3

"""The LLM cache key: what changes a reply changes the key; credentials and clients do not."""

from __future__ import annotations

import httpx
import pytest
from langchain_core.callbacks import StdOutCallbackHandler
from langchain_core.messages import HumanMessage

from flowkit_prefect.llm import llm_cache_key
from flowkit_prefect.models.local_llm import ChatLocalLlama
from flowkit_prefect.testing import FakeChatModel

langchain_openai = pytest.importorskip("langchain_openai")

MESSAGES = [HumanMessage("How long do refunds take?")]
BASE = {
    "model": "gpt-4o-mini",
    "base_url": "http://127.0.0.1:8000/v1",
    "api_key": "sk-first",
    "temperature": 0.0,
    "max_completion_tokens": 256,
    "timeout": 30.0,
}


def _key(**changes: object) -> str:
    return llm_cache_key(langchain_openai.ChatOpenAI(**(BASE | changes)), MESSAGES)


@pytest.mark.parametrize(
    "changes",
    [
        {"model": "gpt-4o"},
        {"base_url": "http://127.0.0.1:9000/v1"},
        {"temperature": 0.7},
        {"max_completion_tokens": 512},
        {"max_tokens": 64, "max_completion_tokens": None},
        {"seed": 7},
    ],
    ids=lambda c: ",".join(c),
)
def test_settings_that_change_the_reply_change_the_key(changes: dict[str, object]) -> None:
    assert _key(**changes) != _key()


@pytest.mark.parametrize(
    "changes",
    [
        {"api_key": "sk-second"},
        {"timeout": 300.0},
        {"max_retries": 9},
        {"callbacks": [StdOutCallbackHandler()]},
        {"http_client": httpx.Client(), "http_async_client": httpx.AsyncClient()},
    ],
    ids=lambda c: ",".join(c),
)
def test_credentials_timeouts_and_clients_do_not_change_the_key(
    changes: dict[str, object],
) -> None:
    assert _key(**changes) == _key()


def test_no_secret_reaches_the_fingerprint() -> None:
    from flowkit_prefect.llm._cache import model_fingerprint

    text = repr(model_fingerprint(langchain_openai.ChatOpenAI(**BASE)))
    assert "sk-first" not in text
    assert "gpt-4o-mini" in text and "127.0.0.1:8000" in text


def test_max_tokens_of_the_offline_model_is_in_the_key() -> None:
    short = ChatLocalLlama(model_path="/nonexistent.gguf", max_tokens=32)
    long = ChatLocalLlama(model_path="/nonexistent.gguf", max_tokens=512)
    assert llm_cache_key(short, MESSAGES) != llm_cache_key(long, MESSAGES)


def test_messages_schema_and_tools_are_in_the_key() -> None:
    model = FakeChatModel()
    base = llm_cache_key(model, MESSAGES)
    assert llm_cache_key(model, [HumanMessage("Another question")]) != base
    assert llm_cache_key(model, MESSAGES, schema={"title": "A"}) != base
    assert llm_cache_key(model, MESSAGES, tools=[{"name": "add"}]) != base
    assert llm_cache_key(FakeChatModel(model_name="other"), MESSAGES) != base


def test_bound_tools_are_part_of_the_key() -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    def sub(a: int, b: int) -> int:
        """Subtract b from a."""
        return a - b

    model = FakeChatModel()
    assert llm_cache_key(model.bind_tools([add]), MESSAGES) != llm_cache_key(
        model.bind_tools([sub]), MESSAGES
    )


def _model_classes() -> list[type]:
    from langchain_openai import ChatOpenAI

    from flowkit_prefect.models.openai_compatible import ChatOpenAICompatible

    return [ChatOpenAI, ChatOpenAICompatible, ChatLocalLlama, FakeChatModel]


@pytest.mark.parametrize("cls", _model_classes(), ids=lambda cls: cls.__name__)
def test_every_model_field_is_classified(cls: type) -> None:
    """Each field of the chat models we ship is either in the key or left out on purpose: a
    field a provider adds fails here until someone decides which (neither a run id leaking in
    nor a reply-changing setting silently left out)."""
    from flowkit_prefect.llm._cache import IDENTIFYING_FIELDS, NON_IDENTIFYING_FIELDS

    assert not IDENTIFYING_FIELDS & NON_IDENTIFYING_FIELDS
    own = {"responses", "respond", "calls", "call_metadata", "delay_seconds", "journal"}
    fields = set(cls.model_fields) - (own if cls is FakeChatModel else set())
    unclassified = sorted(fields - IDENTIFYING_FIELDS - NON_IDENTIFYING_FIELDS)
    assert unclassified == [], (
        f"{cls.__name__} has fields neither in IDENTIFYING_FIELDS nor NON_IDENTIFYING_FIELDS "
        f"(flowkit_prefect/llm/_cache.py): {unclassified}"
    )


def test_run_ids_in_tags_metadata_and_names_do_not_change_the_key() -> None:
    from langchain_openai import ChatOpenAI

    messages = [HumanMessage("hi")]
    plain = ChatOpenAI(model="gpt-4o-mini", api_key="sk-x")
    traced = ChatOpenAI(
        model="gpt-4o-mini",
        api_key="sk-x",
        tags=["flow-run-1234"],
        metadata={"flow_run_id": "1234"},
        name="run-1234",
        default_headers={"X-Run": "1234"},
    )
    assert llm_cache_key(plain, messages) == llm_cache_key(traced, messages)
    verbose = ChatOpenAI(model="gpt-4o-mini", api_key="sk-x", verbosity="high")
    assert llm_cache_key(plain, messages) != llm_cache_key(verbose, messages)

"""LangChain's standard conformance suites (``langchain-tests``) against the LangChain classes
the package ships: the offline llama.cpp chat model and MiniLM embeddings (unit and
integration suites), and the test doubles in ``flowkit_prefect.testing`` (unit suites)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests, EmbeddingsIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests, EmbeddingsUnitTests

from flowkit_prefect.models.local_embeddings import MiniLMEmbeddings
from flowkit_prefect.models.local_llm import ChatLocalLlama
from flowkit_prefect.models.openai_compatible import ChatOpenAICompatible
from flowkit_prefect.testing import FakeChatModel, HashEmbeddings


class _LocalLlama:
    @property
    def chat_model_class(self) -> type[ChatLocalLlama]:
        return ChatLocalLlama

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False  # one GGUF file per instance: a call cannot switch models


class TestChatLocalLlamaUnit(_LocalLlama, ChatModelUnitTests):
    pass


class TestChatOpenAICompatibleUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatOpenAICompatible]:
        return ChatOpenAICompatible

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "smollm2", "api_key": "not-a-key", "base_url": "http://127.0.0.1:9/v1"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        env = {"OPENAI_API_KEY": "env-key", "OPENAI_API_BASE": "http://127.0.0.1:9/v1"}
        return env, {"model": "smollm2"}, {"openai_api_key": "env-key"}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True


@pytest.mark.local_model
class TestChatLocalLlamaIntegration(_LocalLlama, ChatModelIntegrationTests):
    pass


class TestMiniLMEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[MiniLMEmbeddings]:
        return MiniLMEmbeddings


class TestMiniLMEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[MiniLMEmbeddings]:
        return MiniLMEmbeddings


class TestFakeChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[FakeChatModel]:
        return FakeChatModel

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True


class TestHashEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[HashEmbeddings]:
        return HashEmbeddings

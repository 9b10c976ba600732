"""Embedder blocks: each returns a langchain-core ``Embeddings`` and knows its vector size."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

from flowkit_prefect.exceptions import MissingDependencyError

if TYPE_CHECKING:  # LangChain loads when embeddings are built, not when the block type is
    from langchain_core.embeddings import Embeddings


class EmbedderBlock(Block, ABC):
    """The ``get_embeddings()`` contract shared by every embedding provider."""

    batch_size: int = Field(default=64, ge=1, description="Texts embedded per call.")
    dimensions: int | None = Field(
        default=None, ge=1, description="Vector size, when known ahead (saves one probe call)."
    )

    @abstractmethod
    def get_embeddings(self) -> Embeddings:
        """Build the LangChain embeddings this block describes."""

    @property
    @abstractmethod
    def model_label(self) -> str:
        """The model's name, stored with every collection built from it."""

    @property
    def concurrent_batches(self) -> int:
        """Batches worth embedding at once in one process: a remote provider is bound by its
        latency, so a few requests overlap."""
        return 4

    def dimension(self) -> int:
        """Size of the vectors; measured by embedding one word when the block cannot know it."""
        if self.dimensions:
            return self.dimensions
        return len(self.get_embeddings().embed_query("dimension probe"))


class LocalEmbedder(EmbedderBlock):
    """all-MiniLM-L6-v2 (384-d), int8 ONNX, run offline in the worker: the embedded default.

    Example:
        ```python
        from flowkit_prefect import LocalEmbedder

        embedder_block = LocalEmbedder.load("BLOCK_NAME")
        vector = embedder_block.get_embeddings().embed_query("What is Prefect?")
        ```
    """

    _block_type_name = "Flowkit Local Embedder"
    _block_type_slug = "flowkit-local-embedder"
    _description = "Offline sentence embeddings: all-MiniLM-L6-v2 (384-d) with ONNX Runtime."
    _documentation_url = HttpUrl("https://github.com/flowkit-prefect/flowkit-prefect#blocks")

    threads: int | None = Field(default=None, ge=1, description="ONNX Runtime threads; empty: all.")

    @property
    def model_label(self) -> str:
        return "all-MiniLM-L6-v2 (int8 ONNX)"

    @property
    def concurrent_batches(self) -> int:
        """One batch at a time unless ``threads`` leaves cores free: ONNX Runtime already spreads
        a batch over every core, and more batches at once only make its threads compete."""
        if self.threads is None:
            return 1
        return max(1, (os.cpu_count() or 1) // self.threads)

    def dimension(self) -> int:
        from flowkit_prefect.models.local_embeddings import MINILM_DIMENSION

        return MINILM_DIMENSION

    def get_embeddings(self) -> Embeddings:
        from flowkit_prefect.models.local_embeddings import MiniLMEmbeddings

        return MiniLMEmbeddings(batch_size=self.batch_size, threads=self.threads)


class OpenAIEmbedder(EmbedderBlock):
    """Any OpenAI-compatible embeddings endpoint, through langchain-openai (``openai`` extra).

    Example:
        ```python
        from flowkit_prefect import OpenAIEmbedder

        embedder_block = OpenAIEmbedder.load("BLOCK_NAME")
        vectors = embedder_block.get_embeddings().embed_documents(["Prefect runs flows."])
        ```
    """

    _block_type_name = "Flowkit OpenAI-Compatible Embedder"
    _block_type_slug = "flowkit-openai-embedder"
    _description = "Embeddings from any OpenAI-compatible API, through langchain-openai."
    _documentation_url = HttpUrl("https://github.com/flowkit-prefect/flowkit-prefect#blocks")

    model: str = Field(default="text-embedding-3-small", description="Embedding model name.")
    base_url: str | None = Field(default=None, description="API base URL. Empty: OpenAI.")
    api_key: SecretStr | None = Field(
        default=None, description="API key, if the endpoint needs one."
    )
    timeout: float = Field(default=60.0, gt=0, description="Seconds before a call is abandoned.")

    @property
    def model_label(self) -> str:
        return f"{self.model} at {self.base_url or 'api.openai.com'}"

    def get_embeddings(self) -> Embeddings:
        try:
            from langchain_openai import OpenAIEmbeddings
        except ImportError as exc:
            raise MissingDependencyError(
                "langchain-openai", "openai", "The OpenAI-compatible embedder"
            ) from exc
        return OpenAIEmbeddings(
            model=self.model,
            base_url=self.base_url,
            api_key=self.api_key or SecretStr("not-needed"),
            chunk_size=self.batch_size,
            dimensions=self.dimensions,
            timeout=self.timeout,
            # Non-OpenAI servers take raw strings, not tiktoken ids.
            check_embedding_ctx_length=self.base_url is None,
        )

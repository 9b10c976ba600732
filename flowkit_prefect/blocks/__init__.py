"""Prefect blocks: where flowkit-prefect's configuration and credentials live."""

from flowkit_prefect.blocks.chat_models import ChatModelBlock, LocalChatModel, OpenAIChatModel
from flowkit_prefect.blocks.embedders import EmbedderBlock, LocalEmbedder, OpenAIEmbedder
from flowkit_prefect.blocks.qdrant import QdrantStore
from flowkit_prefect.blocks.sandboxes import CodeSandbox, DockerSandbox, SubprocessSandbox
from flowkit_prefect.blocks.validation_suite import ValidationSuite

__all__ = [
    "ChatModelBlock",
    "CodeSandbox",
    "DockerSandbox",
    "EmbedderBlock",
    "LocalChatModel",
    "LocalEmbedder",
    "OpenAIChatModel",
    "OpenAIEmbedder",
    "QdrantStore",
    "SubprocessSandbox",
    "ValidationSuite",
]

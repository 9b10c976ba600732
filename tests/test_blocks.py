"""Blocks: Prefect's standard checks, round trips through a real server, secrets kept secret."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import SecretStr
from qdrant_client import QdrantClient

from flowkit_prefect import (
    ConfigurationError,
    DockerSandbox,
    LocalChatModel,
    LocalEmbedder,
    OpenAIChatModel,
    OpenAIEmbedder,
    QdrantStore,
    SubprocessSandbox,
    ValidationSuite,
)
from flowkit_prefect._block_docs import read_block_documents
from flowkit_prefect._blockref import resolve_block

ALL_BLOCKS = [
    LocalChatModel,
    OpenAIChatModel,
    LocalEmbedder,
    OpenAIEmbedder,
    QdrantStore,
    SubprocessSandbox,
    DockerSandbox,
    ValidationSuite,
]
REPO = Path(__file__).resolve().parents[1]


class TestBlockStandards(BlockStandardTestSuite):
    @pytest.fixture(params=ALL_BLOCKS, ids=lambda b: b.__name__)
    def block(self, request: pytest.FixtureRequest) -> type[Block]:
        return request.param

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        pytest.skip("Prefect's check downloads the logo; our blocks ship none and CI is offline.")


def test_slugs_are_namespaced() -> None:
    for block in ALL_BLOCKS:
        assert block.get_block_type_slug().startswith("flowkit-")


def test_blocks_round_trip_through_the_server(harness: str, tmp_path: Path) -> None:
    QdrantStore(location=str(tmp_path / "q")).save("rt", overwrite=True)
    loaded = resolve_block("flowkit-qdrant-store/rt", QdrantStore)
    assert loaded.location == str(tmp_path / "q")
    OpenAIChatModel(model="m", api_key=SecretStr("sk-very-secret")).save("rt", overwrite=True)
    chat = resolve_block("flowkit-openai-chat-model/rt", OpenAIChatModel)
    assert chat.api_key is not None and chat.api_key.get_secret_value() == "sk-very-secret"


def test_resolve_block_errors_say_what_to_do(harness: str) -> None:
    with pytest.raises(ConfigurationError, match="<block-type-slug>/<block-name>"):
        resolve_block("no-slash", QdrantStore)
    with pytest.raises(ConfigurationError, match="flowkit blocks save"):
        resolve_block("flowkit-qdrant-store/does-not-exist", QdrantStore)
    LocalEmbedder().save("kind-check", overwrite=True)
    with pytest.raises(ConfigurationError, match="QdrantStore is needed"):
        resolve_block("flowkit-local-embedder/kind-check", QdrantStore)


def test_secrets_never_appear_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    block = OpenAIChatModel(model="gpt", base_url="http://127.0.0.1:9/v1", api_key="sk-hidden-1")
    store = QdrantStore(location="http://127.0.0.1:6333", api_key="qd-hidden-2")
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("blocks: %r %s %r", block, block, store)
        model = block.get_chat_model()
        logging.getLogger("test").info("model: %r", model)
    text = caplog.text + repr(block) + repr(store) + block.model_dump_json()
    assert "sk-hidden-1" not in text and "qd-hidden-2" not in text


def test_openai_chat_model_block_builds_a_configured_client() -> None:
    block = OpenAIChatModel(
        model="smollm2", base_url="http://127.0.0.1:9/v1", temperature=0.3, max_tokens=77
    )
    model = block.get_chat_model()
    assert model.model_name == "smollm2"
    assert model.temperature == 0.3
    assert block.cost(1000, 2000) == 0.0
    priced = block.model_copy(update={"input_price_per_1k": 0.5, "output_price_per_1k": 1.5})
    assert priced.cost(1000, 2000) == pytest.approx(3.5)


def test_qdrant_store_memory_is_shared_within_a_session() -> None:
    store = QdrantStore(location=":memory:")
    with store.session() as first, store.session() as second:
        assert first is second
        assert isinstance(first, QdrantClient)


def test_qdrant_store_rejects_an_empty_location() -> None:
    with pytest.raises(ValueError, match="location is empty"):
        QdrantStore(location="  ")


def test_local_folder_is_released_after_the_session(harness: str, tmp_path: Path) -> None:
    store = QdrantStore(location=str(tmp_path / "qdrant"))
    with store.session() as client:
        client.get_collections()
    # released: another client (as another process would) can open the folder now
    other = QdrantStore(location=str(tmp_path / "qdrant")).get_client()
    other.close()


def test_repository_block_documents_are_valid(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FLOWKIT_DATA_DIR", str(tmp_path))
    docs = read_block_documents(REPO / "blocks")
    kinds = {cls for cls, _, _ in docs}
    assert kinds == {QdrantStore, LocalEmbedder, LocalChatModel, SubprocessSandbox}
    names = {(cls, name) for cls, name, _ in docs}
    assert names == {(cls, "default") for cls in kinds} | {(QdrantStore, "docker")}
    for cls, name, data in docs:
        block = cls(**data)
        if isinstance(block, QdrantStore):
            # the docker deployments' store is a path inside the container (the /data volume)
            expected = "/data/qdrant" if name == "docker" else str(tmp_path / "qdrant")
            assert block.location == expected


def test_block_documents_resolve_relative_paths_against_the_project(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("FLOWKIT_DATA_DIR", raising=False)
    folder = tmp_path / "blocks"
    folder.mkdir()
    (folder / "q.yaml").write_text(
        "block_type: flowkit-qdrant-store\nname: x\ndata:\n"
        "  location: ${FLOWKIT_DATA_DIR:-./data}/qdrant\n"
    )
    [(_, _, data)] = read_block_documents(folder, base=tmp_path)
    assert data["location"] == str(tmp_path / "data" / "qdrant")
    (folder / "q.yaml").write_text("block_type: nope\nname: x\n")
    with pytest.raises(ConfigurationError, match="unknown block type 'nope'"):
        read_block_documents(folder)

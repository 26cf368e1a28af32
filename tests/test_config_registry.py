"""Configuration, the backend registry, and backends passed as instances."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from engram import AsyncMemory, Memory, MemoryConfig, registry
from engram.embedders.fake import FakeEmbedder
from engram.errors import ConfigError
from engram.interfaces import BackendSettings, Reranker
from engram.stores.sqlite import SQLiteStore


def test_from_config_accepts_mem0_shape(tmp_path: Path) -> None:
    m = Memory.from_config(
        {
            "vector_store": {"provider": "sqlite", "config": {"path": str(tmp_path / "c.db")}},
            "embedder": {"provider": "fake", "config": {"dim": 32}},
            "custom_fact_extraction_prompt": "Only food.",
            "version": "v1.1",
        }
    )
    assert m.engine.config.custom_instructions == "Only food."
    assert isinstance(m.engine.store, SQLiteStore) and m.engine.store.path == tmp_path / "c.db"
    assert m.engine.embedder.info.dim == 32
    m.add("hello", user_id="u", infer=False)
    assert (tmp_path / "c.db").exists()
    m.close()


def test_config_object_and_instances(tmp_path: Path) -> None:
    config = MemoryConfig(namespace="tenant-a")
    m = Memory(config=config, store=SQLiteStore(path=tmp_path / "i.db"), embedder=FakeEmbedder())
    m.add("hello", user_id="u", infer=False)
    assert m.engine.namespace == "tenant-a"
    m.close()


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"vector_store": {"provider": "qdrant"}}, "Unknown store provider 'qdrant'"),
        ({"embedder": {"provider": "nope"}}, "Known providers:"),
        ({"embedder": {"provider": "fake", "config": {"dims": 3}}}, "embedder.config.dims"),
        ({"vector_store": {"provider": "sqlite", "config": {"pathh": "x"}}}, "store.config.pathh"),
        ({"embedder": {"provider": "fake", "config": {"dim": "many"}}}, "embedder.config.dim"),
    ],
)
def test_bad_backend_config_names_the_key(config: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        Memory.from_config(config)


def test_unknown_top_level_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match="graph_stor"):
        Memory.from_config({"graph_stor": {}})


def test_registry_lists_builtins_from_entry_points() -> None:
    assert {"sqlite"} <= set(registry.available("store"))
    assert {"minilm", "openai", "fake"} <= set(registry.available("embedder"))


class ReverseAlphabetReranker(Reranker):
    """A toy reranker registered at run time, as a plugin would be."""

    Settings = BackendSettings
    name: ClassVar[str] = "reverse"

    def __init__(self, settings: BackendSettings | None = None) -> None:
        self.calls = 0

    async def rerank(self, query: str, documents: Sequence[str]) -> list[float]:
        self.calls += 1
        order = sorted(documents, reverse=True)
        return [float(len(documents) - order.index(d)) for d in documents]


async def test_reranker_plugin_through_the_registry(tmp_path: Path) -> None:
    registry.register("reranker", "reverse", ReverseAlphabetReranker)
    m = AsyncMemory(
        {"reranker": {"provider": "reverse"}},
        store=SQLiteStore(path=tmp_path / "r.db"),
        embedder=FakeEmbedder(),
    )
    await m.add(
        [{"role": "user", "content": c} for c in ("apple pie", "zebra pie", "mango pie")],
        user_id="u",
        infer=False,
    )
    plain = await m.search("pie", user_id="u")
    reranked = await m.search("pie", user_id="u", rerank=True)
    assert [r["memory"] for r in reranked["results"]] == ["zebra pie", "mango pie", "apple pie"]
    assert len(plain["results"]) == 3
    await m.close()


async def test_rerank_without_a_reranker_is_a_clear_error(amem: AsyncMemory) -> None:
    await amem.add("x", user_id="u", infer=False)
    with pytest.raises(ConfigError, match="reranker"):
        await amem.search("x", user_id="u", rerank=True)


def test_database_url_in_the_environment_selects_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    from engram.server.settings import ServerSettings
    from engram.stores.postgres import PostgresStore

    assert isinstance(AsyncMemory(embedder=FakeEmbedder()).store, SQLiteStore)
    assert ServerSettings.from_env().state_backend == "sqlite"
    monkeypatch.setenv("ENGRAM_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert isinstance(AsyncMemory(embedder=FakeEmbedder()).store, PostgresStore)  # nothing connects yet
    assert ServerSettings.from_env().state_backend == "postgres"

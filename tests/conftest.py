"""Shared fixtures: every test runs with its own ENGRAM_HOME; stores are parametrized by backend."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engram import AsyncMemory, Memory
from engram.embedders.fake import FakeEmbedder
from engram.interfaces import Store
from engram.service import ServiceState
from engram.stores.sqlite import SQLiteStore

pytest_plugins = ["tests._pg"]

STORE_BACKENDS = ["sqlite"]
if importlib.util.find_spec("engram.stores.postgres") is not None:
    STORE_BACKENDS.append("postgres")


@pytest.fixture(autouse=True)
def engram_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test touches ~/.engram or picks up real API keys."""
    home = tmp_path / "engram-home"
    monkeypatch.setenv("ENGRAM_HOME", str(home))
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ENGRAM_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture(params=STORE_BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Builds fresh, unopened stores of one backend (all sharing one database per test)."""
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        return lambda: SQLiteStore(path=path)
    factory: Callable[[], Store] = request.getfixturevalue("postgres_store_factory")
    return factory


@pytest.fixture(params=STORE_BACKENDS)
def state_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], ServiceState]:
    """Builds fresh, unopened server states of one backend (all sharing one database per test)."""
    if request.param == "sqlite":
        from engram.stores.sqlite.service import SQLiteServiceState

        path = tmp_path / "server.db"
        return lambda: SQLiteServiceState(path=path)
    from engram.stores.postgres.service import PostgresServiceState

    url, schema = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_schema")
    return lambda: PostgresServiceState(url=url, schema_name=schema, max_pool_size=4)


@pytest.fixture
async def store(store_factory: Callable[[], Store], embedder: FakeEmbedder) -> AsyncIterator[Store]:
    s = store_factory()
    await s.open(embedder.info)
    yield s
    await s.close()


@pytest.fixture
async def amem(store_factory: Callable[[], Store], embedder: FakeEmbedder) -> AsyncIterator[AsyncMemory]:
    engine = AsyncMemory(store=store_factory(), embedder=embedder)
    yield engine
    await engine.close()


@pytest.fixture
def mem(tmp_path: Path, embedder: FakeEmbedder) -> Iterator[Memory]:
    m = Memory(store=SQLiteStore(path=tmp_path / "mem.db"), embedder=embedder)
    yield m
    m.close()


def ids(results: dict[str, Any]) -> list[str]:
    return [r["id"] for r in results["results"]]

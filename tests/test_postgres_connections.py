"""Where the PostgreSQL store connects: read replicas, and settings for connection poolers.

Read replicas: searches and listings from a real streaming replica, writes to the primary.
The replica is a hot standby made with ``pg_basebackup`` from the test server (see ``tests/_pg.py``).
Pausing its WAL replay makes the routing observable: what a read returns tells which server answered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import psycopg
import pytest

from engram import AsyncMemory
from engram.errors import StoreError
from engram.stores.postgres import PostgresStore
from engram.testing import FakeEmbedder

pytestmark = pytest.mark.postgres


@pytest.fixture
def replay_paused(pg_replica_url: str) -> Iterator[Callable[[bool], None]]:
    """``pause(True)`` stops the replica replaying the primary's WAL; replay resumes afterwards."""

    def pause(on: bool) -> None:
        with psycopg.connect(pg_replica_url, autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()" if on else "SELECT pg_wal_replay_resume()")

    yield pause
    pause(False)


def engine(pg_url: str, replica: str, schema: str, **settings: Any) -> AsyncMemory:
    store = PostgresStore(url=pg_url, read_url=replica, schema_name=schema, **settings)
    return AsyncMemory({"llm_from_env": False}, store=store, embedder=FakeEmbedder())


@pytest.fixture
async def replicated(pg_url: str, pg_replica_url: str, pg_schema: str) -> AsyncIterator[AsyncMemory]:
    """An engine whose store reads from the replica, with no read-your-writes window."""
    memory = engine(pg_url, pg_replica_url, pg_schema, read_your_writes_seconds=0)
    yield memory
    await memory.close()


async def eventually(probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    """``probe()``'s first truthy value; a replica that has not replayed the schema yet may raise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await probe()
        except StoreError:
            if time.monotonic() > deadline:
                raise
            value = None
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def test_writes_go_to_the_primary_and_reads_to_the_replica(
    replicated: AsyncMemory, replay_paused: Callable[[bool], None]
) -> None:
    # Migrations and writes succeed: the replica would refuse them (read-only transaction).
    first = await replicated.add("alice likes green tea", user_id="alice", infer=False)
    first_id = first["results"][0]["id"]
    assert await eventually(lambda: replicated.get(first_id)), "the replica never replayed the add"

    replay_paused(True)
    second = await replicated.add("alice plays the cello", user_id="alice", infer=False)
    second_id = second["results"][0]["id"]
    await asyncio.sleep(0.3)
    # The primary has it; the paused replica, which answers reads, does not.
    assert await replicated.get(second_id) is None
    hits = await replicated.search("cello", filters={"user_id": "alice"})
    assert second_id not in {h["id"] for h in hits["results"]}
    listed = await replicated.get_all(filters={"user_id": "alice"})
    assert [m["id"] for m in listed["results"]] == [first_id]

    replay_paused(False)
    assert await eventually(lambda: replicated.get(second_id))
    hits = await replicated.search("cello", filters={"user_id": "alice"})
    assert hits["results"][0]["id"] == second_id


async def test_a_process_reads_its_own_writes_from_the_primary(
    pg_url: str, pg_replica_url: str, pg_schema: str, replay_paused: Callable[[bool], None]
) -> None:
    writer = engine(pg_url, pg_replica_url, pg_schema, read_your_writes_seconds=60)
    other = engine(pg_url, pg_replica_url, pg_schema, read_your_writes_seconds=0)
    try:
        warm = await writer.add("warm up", user_id="bob", infer=False)
        assert await eventually(lambda: other.get(warm["results"][0]["id"]))  # the replica caught up
        replay_paused(True)
        out = await writer.add("bob moved to Lisbon", user_id="bob", infer=False)
        memory_id = out["results"][0]["id"]
        assert (await writer.get(memory_id))["memory"] == "bob moved to Lisbon"  # type: ignore[index]
        hits = await writer.search("Lisbon", filters={"user_id": "bob"})
        assert hits["results"][0]["id"] == memory_id
        assert await other.get(memory_id) is None  # another process: from the (paused) replica
        # The dedup decision is made on the primary, whatever the replica has replayed.
        again = await other.add("bob moved to Lisbon", user_id="bob", infer=False)
        assert again["results"][0]["event"] == "NONE"
        assert again["results"][0]["id"] == memory_id
    finally:
        await writer.close()
        await other.close()


async def test_read_url_comes_from_the_environment(
    pg_url: str, pg_replica_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGRAM_DATABASE_READ_URL", pg_replica_url)
    store = PostgresStore(url=pg_url, schema_name=pg_schema, read_your_writes_seconds=0)
    await store.open(FakeEmbedder().info)
    try:
        async with store._read_conn("default") as conn:
            cur = await conn.execute("SELECT pg_is_in_recovery()")
            assert (await cur.fetchone())[0] is True
        async with store._conn() as conn:
            cur = await conn.execute("SELECT pg_is_in_recovery()")
            assert (await cur.fetchone())[0] is False
    finally:
        await store.close()


async def test_just_after_open_reads_go_to_the_primary(
    pg_url: str, pg_replica_url: str, pg_schema: str, replay_paused: Callable[[bool], None]
) -> None:
    replay_paused(True)  # the replica cannot have the new schema yet
    memory = engine(pg_url, pg_replica_url, pg_schema, read_your_writes_seconds=60)
    try:
        assert (await memory.get_all(filters={"user_id": "dan"}))["results"] == []
    finally:
        await memory.close()


async def test_prepared_statements_can_be_turned_off_for_transaction_poolers(
    pg_url: str, pg_schema: str
) -> None:
    for enabled, expected in ((True, 5), (False, None)):
        store = PostgresStore(url=pg_url, schema_name=pg_schema, prepared_statements=enabled)
        await store.open(FakeEmbedder().info)
        try:
            async with store._conn() as conn:
                assert conn.prepare_threshold == expected
        finally:
            await store.close()


async def test_everything_works_through_pgbouncer_in_transaction_mode(
    pgbouncer_url: str, pg_schema: str
) -> None:
    """Concurrent adds, searches, listings, updates, deletes and history through a transaction pooler."""
    store = PostgresStore(url=pgbouncer_url, schema_name=pg_schema, prepared_statements=False)
    memory = AsyncMemory({"llm_from_env": False}, store=store, embedder=FakeEmbedder())

    async def client(n: int) -> None:
        user = f"user-{n}"
        ids = []
        for i in range(8):  # more than psycopg's prepare threshold (5) of each statement
            out = await memory.add(f"{user} fact number {i} about sailing", user_id=user, infer=False)
            ids.append(out["results"][0]["id"])
            hits = await memory.search(f"fact number {i}", filters={"user_id": user}, top_k=3)
            assert hits["results"], "a search found nothing"
        await memory.update(ids[0], f"{user} fact number 0 about rowing")
        await memory.delete(ids[1])
        listed = await memory.get_all(filters={"user_id": user})
        assert len(listed["results"]) == 7
        events = [h["event"] for h in await memory.history(ids[0])]
        assert events == ["ADD", "UPDATE"]
        again = await memory.add(f"{user} fact number 2 about sailing", user_id=user, infer=False)
        assert again["results"][0]["event"] == "NONE"

    try:
        await asyncio.gather(*(client(n) for n in range(6)))
    finally:
        await memory.close()

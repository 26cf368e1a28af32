"""The COPY bulk loader of the PostgreSQL store (engram.stores.postgres.bulk) on a real PostgreSQL:
what it stores reads, searches and ranks exactly like what ``Store.add`` stores."""

from __future__ import annotations

from collections.abc import Callable
from itertools import product
from typing import Any

import psycopg
import pytest

from engram.embedders.fake import FakeEmbedder
from engram.errors import StoreError
from engram.filters import parse_filters
from engram.stores.postgres import PostgresStore
from engram.stores.postgres.bulk import copy_memories
from engram.types import NewMemory, Scope, Visibility
from tests.test_postgres_store import QUERIES, corpus, memories

pytestmark = pytest.mark.postgres


def index_names(url: str, schema: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'memories'", (schema,)
        ).fetchall()
    return {r[0] for r in rows}


async def test_copy_into_empty_store_matches_add(
    postgres_store_factory: Callable[[], Any], pg_url: str, pg_schema: str
) -> None:
    e = FakeEmbedder()
    texts = corpus(300)
    vectors = await e.embed(texts)
    added: PostgresStore = PostgresStore(url=pg_url, schema_name=pg_schema + "_add")
    copied: PostgresStore = postgres_store_factory()
    await added.open(e.info)
    await copied.open(e.info)
    before = index_names(pg_url, pg_schema)
    scope = Scope(user_id="u")
    mems = memories(texts, vectors, scope, source_message_ids=["msg-1"])
    await added.add("ns", [], mems)
    seen: list[int] = []
    out = await copy_memories(copied, "ns", [*mems, mems[0]], progress=seen.append, batch_size=128)
    try:
        assert (out.loaded, out.skipped, out.indexes_rebuilt) == (300, 1, True)
        assert seen == [128, 256, 301]
        assert index_names(pg_url, pg_schema) == before  # every index is back, the HNSW one too
        a = await added.get_many("ns", [m.id for m in mems])
        b = await copied.get_many("ns", [m.id for m in mems])
        assert [(r.text, r.metadata, r.source_message_ids) for r in b] == [
            (r.text, r.metadata, r.source_message_ids) for r in a
        ]
        assert [h.event for h in await copied.history("ns", mems[5].id)] == ["ADD"]
        for query in QUERIES:
            q = (await e.embed([query], kind="query"))[0]
            ka = await added.keyword_candidates("ns", scope, None, Visibility(), query, 10)
            kb = await copied.keyword_candidates("ns", scope, None, Visibility(), query, 10)
            assert [c.memory_id for c in kb] == [c.memory_id for c in ka]
            assert [c.score for c in kb] == pytest.approx([c.score for c in ka], rel=1e-12)
            va = await added.vector_candidates("ns", scope, None, Visibility(), q, 10)
            vb = await copied.vector_candidates("ns", scope, None, Visibility(), q, 10)
            assert vb == va
    finally:
        await added.close()
        await copied.close()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {pg_schema}_add CASCADE")


async def test_copy_into_filled_store_keeps_one_copy_of_each_fact(
    postgres_store_factory: Callable[[], Any], pg_url: str, pg_schema: str
) -> None:
    e = FakeEmbedder()
    store: PostgresStore = postgres_store_factory()
    await store.open(e.info)
    texts = corpus(40)
    vectors = await e.embed(texts)
    scope = Scope(user_id="u")
    first = memories(texts[:20], vectors[:20], scope)
    await store.add("ns", [], first)
    again = [
        NewMemory(f"n{i:05d}", m.text, m.hash, m.scope, m.vector, source_message_ids=["later"])
        for i, m in enumerate(first[:5])
    ]
    rest = memories(texts[20:], vectors[20:], scope)
    for i, m in enumerate(rest):
        m.id = f"r{i:05d}"
    before = index_names(pg_url, pg_schema)
    try:
        out = await copy_memories(store, "ns", [*again, *rest])
        assert (out.loaded, out.skipped, out.indexes_rebuilt) == (20, 5, False)
        assert index_names(pg_url, pg_schema) == before
        page = await store.list_memories("ns", scope, None, Visibility(), limit=100)
        assert page.total == 40
        with psycopg.connect(pg_url) as conn:  # the repeated fact's source links to the stored memory
            links = conn.execute(f"SELECT memory_id FROM {pg_schema}.memory_sources").fetchall()
        assert sorted(r[0] for r in links) == [m.id for m in first[:5]]
        assert await store.get("ns", "n00000") is None
        with pytest.raises(StoreError, match="supersedes"):
            await copy_memories(store, "ns", [NewMemory("x", "x", "hx", scope, vectors[0], supersedes=["y"])])
        assert (await store.list_memories("ns", scope, None, Visibility(), limit=1)).total == 40
    finally:
        await store.close()


async def test_scope_first_keyword_plan_ranks_like_the_index_plan(
    postgres_store_factory: Callable[[], Any],
) -> None:
    """Small scopes' one-statement keyword search (from the scope's rows) and the two-statement one
    (GIN index, term counts first) give the same candidates, common words dropped alike."""
    e = FakeEmbedder()
    store: PostgresStore = postgres_store_factory()
    await store.open(e.info)
    texts = corpus(400)
    await store.add("ns", [], memories(texts, await e.embed(texts), Scope(user_id="u")))
    other = corpus(100, seed=3)
    others = memories(other, await e.embed(other), Scope(user_id="v", agent_id="a"))
    for i, m in enumerate(others):
        m.id = f"v{i:05d}"
    await store.add("ns", [], others)
    common = ["Alice likes", "note the history of Rome", "who likes jazz piano at night", "Dan", "zzz"]
    try:
        for scope in (Scope(user_id="u"), Scope(user_id="v"), Scope(agent_id="a"), Scope()):
            for query, flt in product([*QUERIES, *common], (None, parse_filters({"even": True}))):
                store._scope_sizes.clear()
                by_index = await store.keyword_candidates("ns", scope, flt, Visibility(), query, 10)
                assert store._small_scope("ns", scope)
                by_scope = await store.keyword_candidates("ns", scope, flt, Visibility(), query, 10)
                assert [c.memory_id for c in by_scope] == [c.memory_id for c in by_index], query
                assert [c.score for c in by_scope] == pytest.approx([c.score for c in by_index], rel=1e-9)
    finally:
        await store.close()


async def test_copy_and_add_store_the_same_keyword_document_at_its_limits(
    postgres_store_factory: Callable[[], Any], pg_url: str, pg_schema: str
) -> None:
    """The binary tsvector COPY writes equals the text form ``add`` writes, where tsvector's limits
    bite: over 256 positions of one term, positions past 16,383, an over-long lexeme, one token."""
    e = FakeEmbedder()
    texts = [
        "echo " * 300 + "end",
        " ".join(f"w{i}" for i in range(17_000)) + " tail tail",
        "x" * 3000 + " short words here",
        "solo",
    ]
    vectors = await e.embed(texts)
    added = PostgresStore(url=pg_url, schema_name=pg_schema + "_limits")
    copied: PostgresStore = postgres_store_factory()
    await added.open(e.info)
    await copied.open(e.info)
    try:
        mems = memories(texts, vectors, Scope(user_id="u"))
        await added.add("ns", [], mems)
        await copy_memories(copied, "ns", mems)
        with psycopg.connect(pg_url) as conn:
            rows = [
                conn.execute(f"SELECT id, tsv::text, doc_len FROM {schema}.memories ORDER BY id").fetchall()
                for schema in (pg_schema + "_limits", pg_schema)
            ]
        assert rows[0] == rows[1] and len(rows[0]) == 4
        assert rows[0][0][1].count(",") == 255  # "echo" keeps 256 positions
        assert "'tail':16383" in rows[0][1][1]  # positions past the limit collapse onto it
        assert rows[0][3][1] == "'solo':1"
    finally:
        await added.close()
        await copied.close()

"""The PostgreSQL store against a real PostgreSQL with pgvector (see tests/_pg.py): concurrency across
tasks and processes, migrations, embedder checks, the HNSW path, and parity with the embedded store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from engram import AsyncMemory
from engram.config import RetrievalConfig
from engram.embedders.fake import FakeEmbedder
from engram.errors import ConfigError, ConflictError, EmbedderMismatchError, NotFoundError, StoreError
from engram.filters import parse_filters
from engram.interfaces import Store
from engram.registry import create
from engram.retrieval import SearchRequest, hybrid_search
from engram.stores.postgres import PostgresStore
from engram.stores.postgres.schema import MIGRATIONS
from engram.stores.postgres.sql_filters import compile_filter
from engram.stores.sqlite import SQLiteStore
from engram.types import NewMemory, Scope, StoredMessage, Visibility, text_hash, utcnow

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]

SUBJECTS = ["Alice", "Bob", "Carol", "Dan", "Erin", "Frank"]
VERBS = ["likes", "hates", "is learning", "teaches", "collects", "writes about", "dreams of"]
OBJECTS = [
    "Italian cooking", "jazz piano", "rock climbing", "old maps", "tea from Japan", "chess openings",
    "sailing boats", "running marathons", "vintage cameras", "the history of Rome", "board games",
    "growing tomatoes", "birds of prey", "science fiction novels", "coffee brewing", "oil painting",
]  # fmt: skip
WHEN = ["", " every weekend", " since 2019", " with friends", " in the morning", " at night"]


def corpus(n: int, seed: int = 7) -> list[str]:
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    while len(texts) < n:
        text = (
            f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(WHEN)} "
            f"(note {len(texts)})"
        )
        texts.append(text)
    return texts


QUERIES = [
    "What does Alice like?", "who teaches jazz piano", "marathons and running", "Rome history",
    "Who collects cameras?", "Bob's hobbies at night", "tea", "painting with oil", "birds",
    "what is Carol learning since 2019", "boats sailing with friends", "board games every weekend",
]  # fmt: skip


def memories(texts: list[str], vectors: np.ndarray, scope: Scope, **extra: Any) -> list[NewMemory]:
    return [
        NewMemory(f"m{i:05d}", t, text_hash(t), scope, v, metadata={"i": i, "even": i % 2 == 0}, **extra)
        for i, (t, v) in enumerate(zip(texts, vectors, strict=True))
    ]


@pytest.fixture
async def pg(postgres_store_factory: Callable[[], PostgresStore]) -> AsyncIterator[PostgresStore]:
    store = postgres_store_factory()
    await store.open(FakeEmbedder().info)
    yield store
    await store.close()


# -- no database needed ------------------------------------------------------------------------------
def test_filters_compile_to_bound_parameters_only() -> None:
    tree = parse_filters(
        {
            "user_id": "x'; DROP TABLE memories; --",
            "OR": [{"topic": {"in": ["a'b", 3]}}, {"score": {"gte": 2.5}}, {"name": {"icontains": "Ö'"}}],
            "NOT": [{"tags": {"contains": "evil'--"}}],
            "created_at": {"gte": "2024-01-01"},
        }
    )
    assert tree is not None
    sql, params = compile_filter(tree)
    for value in ("DROP", "a'b", "evil", "2024"):
        assert value not in sql
    assert sql.count("%s") == len(params)
    assert "x'; DROP TABLE memories; --" in params


def test_constructor_does_no_io_and_settings_are_checked() -> None:
    store = PostgresStore(url="postgresql://nobody@127.0.0.1:1/none")  # nothing listens there
    assert store.settings.url is not None
    assert "nobody" not in repr(store.settings)  # the URL (it may hold a password) is a secret
    with pytest.raises(ConfigError, match="schema_name"):
        create("store", "postgres", {"url": "postgresql://x", "schema_name": "Bad-Name"}, Store)
    with pytest.raises(ConfigError, match="unknown_key"):
        create("store", "postgres", {"unknown_key": 1}, Store)


async def test_missing_url_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGRAM_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="ENGRAM_DATABASE_URL"):
        await PostgresStore().open(FakeEmbedder().info)


async def test_unreachable_server_is_a_store_error() -> None:
    store = PostgresStore(url="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(StoreError) as info:
        await store.open(FakeEmbedder().info)
    assert isinstance(info.value.__cause__, psycopg.Error)


# -- against PostgreSQL ------------------------------------------------------------------------------
async def test_url_from_environment_and_config_dict(
    pg_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGRAM_DATABASE_URL", pg_url)
    config = {"vector_store": {"provider": "postgres", "config": {"schema_name": pg_schema}}}
    async with AsyncMemory(config, embedder=FakeEmbedder()) as m:
        added = await m.add("I keep bees on the roof", user_id="u", infer=False)
        found = await m.search("bees", user_id="u")
    assert [r["id"] for r in found["results"]] == [added["results"][0]["id"]]


async def test_concurrent_identical_adds_from_many_tasks_store_once(
    postgres_store_factory: Callable[[], PostgresStore],
) -> None:
    embedder = FakeEmbedder()
    stores = [postgres_store_factory() for _ in range(8)]  # separate pools: real concurrency
    await asyncio.gather(*(s.open(embedder.info) for s in stores))
    scope = Scope(user_id="alice")
    text = "Alice is allergic to peanuts"
    vector = (await embedder.embed([text]))[0]

    async def add(i: int) -> str:
        store = stores[i % len(stores)]
        msg = StoredMessage(f"msg-{i}", scope, "user", text, None, utcnow(), utcnow())
        mem = NewMemory(f"mem-{i}", text, text_hash(text), scope, vector, source_message_ids=[msg.id])
        (outcome,) = await store.add("ns", [msg], [mem])
        return outcome.event

    events = await asyncio.gather(*(add(i) for i in range(64)))
    assert sorted(set(events)) == ["ADD", "NONE"] and events.count("ADD") == 1
    page = await stores[0].list_memories("ns", scope, None, Visibility(), limit=10)
    assert page.total == 1
    assert len(page.records[0].source_message_ids) == 64  # every message is linked to the one fact
    assert [h.event for h in await stores[0].history("ns", page.records[0].id)] == ["ADD"]
    await asyncio.gather(*(s.close() for s in stores))


def test_concurrent_identical_adds_from_many_processes_store_once(pg_url: str, pg_schema: str) -> None:
    code = textwrap.dedent(
        f"""
        import asyncio, sys
        from engram.embedders.fake import FakeEmbedder
        from engram.stores.postgres import PostgresStore
        from engram.types import NewMemory, Scope, text_hash

        async def main(worker):
            e = FakeEmbedder()
            s = PostgresStore(url={pg_url!r}, schema_name={pg_schema!r})
            await s.open(e.info)
            events = []
            for k in range(20):
                text = f"shared fact number {{k}}"
                v = (await e.embed([text]))[0]
                mem = NewMemory(f"w{{worker}}-{{k}}", text, text_hash(text), Scope(user_id="u"), v)
                events.append((await s.add("ns", [], [mem]))[0].event)
            await s.close()
            print(events.count("ADD"))

        asyncio.run(main(int(sys.argv[1])))
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(w)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for w in range(6)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err.decode()
    assert sum(int(out) for out, _ in outputs) == 20  # each of the 20 facts was added exactly once
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(f"SELECT count(*), count(DISTINCT hash) FROM {pg_schema}.memories").fetchone()
        versions = conn.execute(f"SELECT version FROM {pg_schema}.schema_migrations ORDER BY 1").fetchall()
    assert rows == (20, 20)
    assert versions == [(v,) for v, _, _ in MIGRATIONS]  # six processes migrated one schema: each once


async def test_embedder_mismatch_says_what_to_do(postgres_store_factory: Callable[[], PostgresStore]) -> None:
    first = postgres_store_factory()
    await first.open(FakeEmbedder(dim=64).info)
    await first.close()
    second = postgres_store_factory()
    with pytest.raises(EmbedderMismatchError, match="schema_name") as info:
        await second.open(FakeEmbedder(dim=32).info)
    assert info.value.details["stored"]["dim"] == "64"
    reopened = postgres_store_factory()
    await reopened.open(FakeEmbedder(dim=64).info)  # the original embedder still works
    await reopened.close()


async def test_update_to_an_existing_fact_conflicts(pg: PostgresStore) -> None:
    e = FakeEmbedder()
    texts = ["likes green tea", "likes black coffee"]
    vecs = await e.embed(texts)
    scope = Scope(user_id="u")
    await pg.add("ns", [], memories(texts, vecs, scope))
    with pytest.raises(ConflictError):
        await pg.update("ns", "m00001", text=texts[0], text_hash=text_hash(texts[0]), vector=vecs[0])
    with pytest.raises(NotFoundError):
        await pg.update("other-namespace", "m00001", metadata={})


async def test_hnsw_path_agrees_with_exact_search(postgres_store_factory: Callable[[], Any]) -> None:
    e = FakeEmbedder()
    exact: PostgresStore = postgres_store_factory()
    await exact.open(e.info)
    texts = corpus(300)
    await exact.add("ns", [], memories(texts, await e.embed(texts), Scope(user_id="u")))
    approx = PostgresStore(exact.settings, exact_search_max_rows=0)  # every scope goes through HNSW
    await approx.open(e.info)
    assert approx._has_hnsw
    even = parse_filters({"even": True})
    for query in QUERIES:
        q = (await e.embed([query], kind="query"))[0]
        for flt in (None, even):
            a = await exact.vector_candidates("ns", Scope(user_id="u"), flt, Visibility(), q, 10)
            b = await approx.vector_candidates("ns", Scope(user_id="u"), flt, Visibility(), q, 10)
            assert [c.memory_id for c in b] == [c.memory_id for c in a]
            assert len(b) == 10  # filtered HNSW still fills the page (iterative scan)
    await exact.close()
    await approx.close()


async def test_cached_scope_statistics_rank_like_fresh_ones(
    postgres_store_factory: Callable[[], Any],
) -> None:
    """Large scopes reuse their BM25 statistics and term counts; the ranking must not change."""
    e = FakeEmbedder()
    fresh: PostgresStore = postgres_store_factory()
    await fresh.open(e.info)
    texts = corpus(300)
    await fresh.add("ns", [], memories(texts, await e.embed(texts), Scope(user_id="u")))
    cached = PostgresStore(fresh.settings, stats_cache_min_rows=1)  # every scope counts as large
    await cached.open(e.info)
    scope = Scope(user_id="u")
    for _round in range(2):  # the second round answers from the caches
        for query in QUERIES:
            a = await fresh.keyword_candidates("ns", scope, None, Visibility(), query, 20)
            b = await cached.keyword_candidates("ns", scope, None, Visibility(), query, 20)
            assert [(c.memory_id, round(c.score, 9)) for c in b] == [
                (c.memory_id, round(c.score, 9)) for c in a
            ]
    assert cached._term_cache and cached._stats_cache and not fresh._stats_cache
    await fresh.close()
    await cached.close()


async def test_a_small_scopes_first_search_starts_from_its_rows(
    postgres_store_factory: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a small scope's first keyword search in a process counts the scope (bounded) and starts
    from its rows: the statistics statement counts terms through the table-wide GIN index, which
    took 0.3-0.5 s per first search at 10M rows."""
    from engram.stores.postgres.candidates import PostgresCandidates

    e = FakeEmbedder()
    store: PostgresStore = postgres_store_factory()
    await store.open(e.info)
    texts = corpus(60)
    await store.add("ns", [], memories(texts, await e.embed(texts), Scope(user_id="u")))
    expected = await store.keyword_candidates("ns", Scope(user_id="u"), None, Visibility(), QUERIES[0], 20)
    await store.close()

    async def global_statistics(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a small scope's search asked for table-wide statistics")

    monkeypatch.setattr(PostgresCandidates, "_stats_and_counts", global_statistics)
    first: PostgresStore = PostgresStore(store.settings)  # as in a new process: nothing cached
    await first.open(e.info)
    found = await first.keyword_candidates("ns", Scope(user_id="u"), None, Visibility(), QUERIES[0], 20)
    await first.close()
    assert found and [(c.memory_id, round(c.score, 9)) for c in found] == [
        (c.memory_id, round(c.score, 9)) for c in expected
    ]


# -- parity with the embedded store ------------------------------------------------------------------
@pytest.fixture
async def both(
    postgres_store_factory: Callable[[], PostgresStore], tmp_path: Path
) -> AsyncIterator[tuple[Store, Store]]:
    e = FakeEmbedder()
    pg, lite = postgres_store_factory(), SQLiteStore(path=tmp_path / "parity.db")
    for s in (pg, lite):
        await s.open(e.info)
    texts = corpus(400)
    vecs = await e.embed(texts)
    for s in (pg, lite):
        await s.add("ns", [], memories(texts, vecs, Scope(user_id="u", agent_id="a")))
    yield pg, lite
    for s in (pg, lite):
        await s.close()


async def test_retrieval_parity_with_sqlite(both: tuple[Store, Store]) -> None:
    pg, lite = both
    e = FakeEmbedder()
    for query in QUERIES:
        q = (await e.embed([query], kind="query"))[0]
        for scope in (Scope(user_id="u"), Scope(user_id="u", agent_id="a")):
            req = SearchRequest("ns", scope, None, Visibility(), query, 10)
            got = [h.record.id for h in await hybrid_search(pg, req, q, RetrievalConfig())]
            want = [h.record.id for h in await hybrid_search(lite, req, q, RetrievalConfig())]
            assert got == want, query
            kw_pg = await pg.keyword_candidates("ns", scope, None, Visibility(), query, 20)
            kw_lite = await lite.keyword_candidates("ns", scope, None, Visibility(), query, 20)
            assert [c.memory_id for c in kw_pg] == [c.memory_id for c in kw_lite], query
            np.testing.assert_allclose(
                [c.score for c in kw_pg], [c.score for c in kw_lite], rtol=1e-6, err_msg=query
            )


@pytest.mark.parametrize(
    "raw",
    [
        {"i": {"gte": 100, "lt": 120}},
        {"even": True, "i": {"nin": [0, 2, 4]}},
        {"i": {"ne": 5}},
        {"OR": [{"i": 1}, {"i": {"in": [2, 3, "3"]}}]},
        {"NOT": [{"i": {"lte": 390}}]},
        {"missing": {"ne": 1}},
        {"missing": "*"},
        {"i": {"gt": "5"}},
        {"user_id": {"icontains": "U"}},
        {"agent_id": {"in": ["a", "b"]}, "i": {"lt": 3}},
        {"created_at": {"gte": "2000-01-01"}, "i": {"lt": 2}},
    ],
)
async def test_filter_parity_with_sqlite(both: tuple[Store, Store], raw: dict[str, Any]) -> None:
    pg, lite = both
    tree = parse_filters(raw)
    got = await pg.list_memories("ns", Scope(user_id="u"), tree, Visibility(), limit=1000)
    want = await lite.list_memories("ns", Scope(user_id="u"), tree, Visibility(), limit=1000)
    assert [r.id for r in got.records] == [r.id for r in want.records]
    assert got.total == want.total


async def test_metadata_filters_on_typed_values(pg: PostgresStore) -> None:
    e = FakeEmbedder()
    scope = Scope(user_id="u")
    rows = [
        {"n": 5}, {"n": "5"}, {"n": 5.0}, {"n": [1, 5]}, {"n": ["x5y", "z"]}, {"n": "Hello5"}, {"n": None},
        {"n": True}, {"o": {"n": 7}}, {},
    ]  # fmt: skip
    texts = [f"row {i}" for i in range(len(rows))]
    vecs = await e.embed(texts)
    await pg.add(
        "ns", [], [NewMemory(f"r{i}", t, text_hash(t), scope, v, metadata=md)
                   for i, (t, v, md) in enumerate(zip(texts, vecs, rows, strict=True))]
    )  # fmt: skip

    async def ids(raw: dict[str, Any]) -> set[str]:
        page = await pg.list_memories("ns", scope, parse_filters(raw), Visibility(), limit=100)
        return {r.id for r in page.records}

    assert await ids({"n": 5}) == {"r0", "r2"}  # numbers equal numbers (5 == 5.0), never "5"
    assert await ids({"n": "5"}) == {"r1"}
    assert await ids({"n": {"gte": 5}}) == {"r0", "r2"}
    assert await ids({"n": {"contains": 5}}) == {"r3"}
    assert await ids({"n": {"contains": "5"}}) == {"r1", "r5"}  # substring of strings
    assert await ids({"n": {"contains": "z"}}) == {"r4"}  # element of an array
    assert await ids({"n": {"icontains": "hello"}}) == {"r5"}
    assert await ids({"n": None}) == {"r6"}
    assert await ids({"n": True}) == {"r7"}
    assert await ids({"o.n": 7}) == {"r8"}
    assert await ids({"n": {"ne": 5}}) == {f"r{i}" for i in range(10)} - {"r0", "r2"}  # absent too
    assert await ids({"n": "*"}) == {f"r{i}" for i in range(8)} - {"r6"}  # present and not null


async def test_engine_on_postgres_matches_engine_on_sqlite(
    postgres_store_factory: Callable[[], PostgresStore], tmp_path: Path
) -> None:
    facts = corpus(60, seed=3)
    results = []
    for store in (postgres_store_factory(), SQLiteStore(path=tmp_path / "engine.db")):
        async with AsyncMemory(store=store, embedder=FakeEmbedder()) as m:
            for fact in facts:
                await m.add(fact, user_id="u", infer=False)
            await m.add(facts[0], user_id="u", infer=False)  # a duplicate, stored once
            runs = []
            for query in QUERIES:
                found = await m.search(query, user_id="u", top_k=10)
                runs.append([(r["memory"], r["score"]) for r in found["results"]])
            listed = await m.get_all(user_id="u", top_k=1000)
            results.append((runs, len(listed["results"])))
    (pg_runs, pg_count), (lite_runs, lite_count) = results
    assert pg_count == lite_count == 60
    for a, b in zip(pg_runs, lite_runs, strict=True):
        # equal scores are ordered by memory id, and the ids (random) differ between the two stores
        # (and a tie at the cut-off may let either in): compare what scores above the last place
        def tie_free(run: list[tuple[str, float]]) -> list[tuple[float, str]]:
            cut = round(min(s for _, s in run), 5) if run else 0.0
            return sorted((-round(s, 5), t) for t, s in run if round(s, 5) > cut)

        assert tie_free(a) == tie_free(b)


def test_server_has_pgvector(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert version is not None

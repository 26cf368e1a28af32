"""Every store ranks the same query the same way: the same ids in the same order.

The ranking policy (engram/ranking.py: which query terms count in a scope, which neighbours are
context) is decided once; this checks that the stores feed it the same numbers, on a conversation
where the speakers' names are in most memories (so they must be dropped from the keyword query) and
where memories fall into sessions (so neighbours within the gap lend their scores).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engram.config import RetrievalConfig
from engram.embedders.fake import FakeEmbedder
from engram.interfaces import Store
from engram.ranking import memory_context
from engram.retrieval import SearchRequest, hybrid_search
from engram.stores.sqlite import SQLiteStore
from engram.types import MemoryRecord, NewMemory, Scope, Visibility, text_hash

pytestmark = pytest.mark.postgres

TOPICS = [
    "the garden needs water", "the train to Lyon was late", "a new recipe for lentil soup",
    "the cello lesson moved to Friday", "a hike up the ridge", "the budget for the trip",
    "a book about whales", "the dentist appointment", "fixing the bike chain", "a film about Mars",
]  # fmt: skip
QUERIES = ["Alice garden", "Bob train Lyon", "what about the cello", "Alice and Bob", "whales book", "Mars"]


def conversation() -> list[tuple[str, str, datetime]]:
    """(id, text, observed) of 60 turns between Alice and Bob in six sessions a day apart."""
    start = datetime(2024, 3, 1, 9, tzinfo=UTC)
    turns = []
    for i in range(60):
        speaker = "Alice" if i % 2 == 0 else "Bob"
        observed = start + timedelta(days=i // 10, minutes=i % 10)
        turns.append((f"t{i:03d}", f"{speaker} says {TOPICS[(i * 7) % len(TOPICS)]} (turn {i})", observed))
    return turns


@pytest.fixture
async def stores(postgres_store_factory: Callable[[], Store], tmp_path: Path) -> AsyncIterator[list[Store]]:
    embedder = FakeEmbedder()
    both: list[Store] = [SQLiteStore(path=tmp_path / "conformance.db"), postgres_store_factory()]
    turns = conversation()
    vectors = await embedder.embed([text for _, text, _ in turns])
    scope = Scope(user_id="alice", run_id="chat")
    for store in both:
        await store.open(embedder.info)
        await store.add(
            "ns",
            [],
            [
                NewMemory(mid, text, text_hash(text), scope, vector, observed_at=observed)
                for (mid, text, observed), vector in zip(turns, vectors, strict=True)
            ],
        )
    yield both
    for store in both:
        await store.close()


async def test_both_stores_rank_every_query_the_same_way(stores: list[Store]) -> None:
    embedder = FakeEmbedder()
    for query in QUERIES:
        vector = (await embedder.embed([query], kind="query"))[0]
        for scope in (Scope(user_id="alice"), Scope(user_id="alice", run_id="chat")):
            request = SearchRequest("ns", scope, None, Visibility(), query, 10)
            ranked = [
                [hit.record.id for hit in await hybrid_search(store, request, vector, RetrievalConfig())]
                for store in stores
            ]
            assert ranked[0] == ranked[1], query
            assert ranked[0], query


async def test_both_stores_give_the_same_context_and_drop_the_same_terms(stores: list[Store]) -> None:
    scope = Scope(user_id="alice", run_id="chat")
    ids = [f"t{i:03d}" for i in (0, 9, 10, 35, 59)]
    contexts = [await store.memory_context("ns", scope, ids, 3600) for store in stores]
    assert contexts[0] == contexts[1]
    assert contexts[0]["t009"].next_id is None and contexts[0]["t010"].prev_id is None  # a day apart
    assert contexts[0]["t035"].prev_id == "t034" and contexts[0]["t035"].next_id == "t036"
    # "Alice" is in half of the scope: it carries no topic there, so only "garden" ranks.
    hits = [
        await store.keyword_candidates("ns", scope, None, Visibility(), "Alice garden", 60)
        for store in stores
    ]
    assert [c.memory_id for c in hits[0]] == [c.memory_id for c in hits[1]]
    assert hits[0] and all(
        "garden" in text for mid, text, _ in conversation() if mid in {c.memory_id for c in hits[0]}
    )


async def test_postgres_candidates_bring_the_context_and_cosines_a_search_would_ask_for(
    stores: list[Store],
) -> None:
    """PostgreSQL's candidate statements return each candidate's timeline and the cosines fusion needs
    (so a search asks no memory_context nor vectors_for): the same as the generic calls give."""
    sqlite, postgres = stores
    scope = Scope(user_id="alice", run_id="chat")
    vector = (await FakeEmbedder().embed(["Bob train Lyon"], kind="query"))[0]
    found = await postgres.hybrid_candidates("ns", scope, None, Visibility(), vector, "Bob train Lyon", 3)
    by_vector = {c.memory_id for c in found.vector}
    by_keyword = {c.memory_id for c in found.keyword}
    assert found.timeline is not None and set(found.timeline) == by_vector | by_keyword
    assert found.extra_cosines and set(found.extra_cosines) == by_keyword - by_vector
    expected = await sqlite.memory_context("ns", scope, sorted(found.timeline), 3600)
    assert {mid: memory_context(*found.timeline[mid], 3600) for mid in found.timeline} == expected
    neighbours = {n for c in expected.values() for n in (c.prev_id, c.next_id) if n is not None}
    vectors = await sqlite.vectors_for("ns", sorted(neighbours | set(found.extra_cosines)))
    cosines = {**found.neighbour_cosines, **found.extra_cosines}
    for mid in neighbours | set(found.extra_cosines):
        assert cosines[mid] == pytest.approx(float(np.dot(vectors[mid], vector)), abs=1e-5)


async def test_a_search_reads_each_record_once(stores: list[Store], monkeypatch: pytest.MonkeyPatch) -> None:
    for store in stores:
        asked: list[list[str]] = []
        get_many = store.get_many

        async def counted(
            namespace: str, ids: Sequence[str], get_many: Any = get_many, asked: list[list[str]] = asked
        ) -> list[MemoryRecord]:
            asked.append(list(ids))
            return list(await get_many(namespace, ids))

        monkeypatch.setattr(store, "get_many", counted)
        vector = (await FakeEmbedder().embed(["whales book"], kind="query"))[0]
        request = SearchRequest("ns", Scope(user_id="alice"), None, Visibility(), "whales book", 5)
        hits = await hybrid_search(store, request, vector, RetrievalConfig())
        assert len(asked) == 1 and len(hits) == 5
        assert all(hit.record.id in asked[0] and hit.record.text for hit in hits)

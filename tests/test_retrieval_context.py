"""Conversational context helps the answer and never buries it (both stores, the real MiniLM model)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from engram import AsyncMemory
from engram.config import RetrievalConfig
from engram.embedders.minilm import MiniLMEmbedder
from engram.fusion import contextual_scores
from engram.interfaces import Store
from engram.types import MemoryContext
from tests.test_core_api import MOVIE_CHAT

SCI_FI = MOVIE_CHAT[2]["content"]


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder()


async def test_seed_example_ranks_the_sci_fi_turn_first(
    store_factory: Callable[[], Store], minilm: MiniLMEmbedder
) -> None:
    engine = AsyncMemory(store=store_factory(), embedder=minilm)
    try:
        await engine.add(MOVIE_CHAT, user_id="alice", infer=False)
        found = await engine.search("which movie genre does she love?", user_id="alice", top_k=4)
        assert found["results"][0]["memory"] == SCI_FI
    finally:
        await engine.close()


async def test_seed_example_in_a_large_scope_of_turns(
    store_factory: Callable[[], Store], minilm: MiniLMEmbedder
) -> None:
    """With context on (a scope big enough to have sessions), the turn still beats its neighbours."""
    engine = AsyncMemory({"retrieval": {"context_min_memories": 0}}, store=store_factory(), embedder=minilm)
    try:
        start = datetime(2024, 5, 1, 20, 0, tzinfo=UTC)
        for i, message in enumerate(MOVIE_CHAT):
            stamp = (start + timedelta(minutes=i)).isoformat()
            await engine.add([message], user_id="alice", infer=False, timestamp=stamp)
        found = await engine.search("which movie genre does she love?", user_id="alice", top_k=4)
        assert found["results"][0]["memory"] == SCI_FI
    finally:
        await engine.close()


def test_a_turn_never_rises_above_the_better_neighbour_it_inherited_from() -> None:
    # "b" matches weakly, its neighbours "a" and "c" match well: b may gain, but stays below both
    cosine = {"a": 0.8, "b": 0.5, "c": 0.7, "d": 0.1, "e": 0.2}
    bm25 = {"a": 3.0, "c": 2.0}
    contexts = {
        "a": MemoryContext(0.0, None, "b"),
        "b": MemoryContext(60.0, "a", "c"),
        "c": MemoryContext(120.0, "b", None),
        "d": MemoryContext(9e6, None, "e"),
        "e": MemoryContext(9e6 + 60, "d", None),
    }
    config = RetrievalConfig(context_prev=1.0, context_next=1.0, context_min_memories=0)
    scores, parts = contextual_scores(list(cosine), cosine, bm25, contexts, "q", config, scope_size=5)
    assert scores["b"] < scores["c"] < scores["a"]
    assert parts["b"]["with_neighbours"] > parts["b"]["base"]  # context still helped b
    # a weak neighbour never drags a turn down
    assert parts["e"]["with_neighbours"] >= parts["e"]["base"]


def test_small_scopes_get_no_neighbour_context() -> None:
    cosine = {"a": 0.8, "b": 0.3}
    contexts = {"a": MemoryContext(0.0, None, "b"), "b": MemoryContext(60.0, "a", None)}
    config = RetrievalConfig()
    _, parts = contextual_scores(["a", "b"], cosine, {}, contexts, "q", config, scope_size=2)
    assert parts["b"]["context"] is False
    assert parts["b"]["with_neighbours"] == parts["b"]["base"]

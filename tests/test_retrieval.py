"""Hybrid retrieval with the real default embedder: each signal can find what the other misses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engram import AsyncMemory
from engram.embedders.minilm import MiniLMEmbedder
from engram.stores.sqlite import SQLiteStore

DISTRACTORS = [
    "We went hiking in the mountains last weekend.",
    "My sister bought a new car, a red hatchback.",
    "The office coffee machine broke again on Monday.",
    "I have been reading a history book about Rome.",
    "Our team won the five-a-side football match.",
    "I'm learning to bake sourdough bread at home.",
    "The kids started swimming lessons this month.",
    "We are repainting the living room in light grey.",
    "My phone battery barely lasts half a day now.",
    "I booked a dentist appointment for next Thursday.",
    "The garden tomatoes are finally turning red.",
    "I switched my commute from bus to bicycle.",
]


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest.fixture
async def engine(tmp_path: Path, minilm: MiniLMEmbedder) -> AsyncIterator[AsyncMemory]:
    # few candidates per signal, so that a memory one signal misses is really missing from its list
    m = AsyncMemory(
        {"retrieval": {"candidates": 3}}, store=SQLiteStore(path=tmp_path / "r.db"), embedder=minilm
    )
    yield m
    await m.close()


async def test_only_the_keyword_side_finds_a_rare_token(engine: AsyncMemory) -> None:
    near_misses = [
        "The wifi password at the cabin is written on the fridge.",
        "The cabin wifi password changed last week.",
        "The guest wifi password is in the cabin guest book.",
        "I wrote the cabin wifi password on a sticky note.",
        "I reset the router admin password yesterday.",
    ]
    target = "Order QX7781 shipped by courier."
    await engine.add(
        [{"role": "user", "content": t} for t in [*DISTRACTORS, *near_misses, target]],
        user_id="u",
        infer=False,
    )
    found = await engine.search("what is the cabin wifi password QX7781", user_id="u", top_k=5, explain=True)
    hit = next(r for r in found["results"] if r["memory"] == target)
    assert hit["explain"]["vector"]["rank"] is None  # not among the vector side's candidates
    assert hit["explain"]["keyword"]["rank"] is not None


async def test_only_the_vector_side_finds_a_paraphrase(engine: AsyncMemory) -> None:
    target = "I love sci-fi movies."
    await engine.add(
        [{"role": "user", "content": t} for t in [*DISTRACTORS, target]], user_id="u", infer=False
    )
    found = await engine.search("science fiction films", user_id="u", top_k=3, explain=True)
    assert found["results"][0]["memory"] == target
    assert found["results"][0]["explain"]["keyword"]["rank"] is None
    assert found["results"][0]["explain"]["vector"]["rank"] == 1


async def test_vector_only_and_keyword_only_configurations(tmp_path: Path, minilm: MiniLMEmbedder) -> None:
    for weights, query in (
        ({"vector_weight": 0.0}, "QX7781"),
        ({"keyword_weight": 0.0}, "science fiction films"),
    ):
        m = AsyncMemory(
            {"retrieval": weights}, store=SQLiteStore(path=tmp_path / f"{query}.db"), embedder=minilm
        )
        await m.add(
            [{"role": "user", "content": t} for t in ["Order QX7781 shipped.", "I love sci-fi movies."]],
            user_id="u",
            infer=False,
        )
        found = await m.search(query, user_id="u", top_k=1)
        assert found["results"], weights
        await m.close()

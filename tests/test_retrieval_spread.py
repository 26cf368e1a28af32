"""The fusion's floored spreads: a lone one-word keyword match cannot outrank a clearly better cosine
match, and noise-level cosines cannot outrank a real keyword match (docs/retrieval.md)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engram import AsyncMemory
from engram.config import RetrievalConfig
from engram.embedders.minilm import MiniLMEmbedder
from engram.fusion import contextual_scores
from engram.interfaces import Store

OLD = RetrievalConfig(vector_min_spread=0, keyword_min_spread=0)  # plain z-scores, the earlier recipe


def _top(cosine: dict[str, float], bm25: dict[str, float], config: RetrievalConfig) -> str:
    scores, _ = contextual_scores(list(cosine), cosine, bm25, {}, "q", config, scope_size=len(cosine))
    return max(scores, key=lambda m: scores[m])


def test_one_shared_common_word_does_not_beat_the_paraphrase() -> None:
    # 18 short memories: "piano" is the clear cosine winner but shares no word with the question;
    # "sense" shares one common word ("making" ~ "makes") and nothing else
    cosine = {f"m{i}": 0.015 * i for i in range(16)} | {"piano": 0.40, "sense": 0.10}
    bm25 = {"sense": 3.6}
    assert _top(cosine, bm25, RetrievalConfig()) == "piano"
    assert _top(cosine, bm25, OLD) == "sense"  # a lone match's z-score grew with the scope's size


def test_noise_level_cosines_do_not_beat_a_keyword_match() -> None:
    # long documents and short turns all far from the question: the cosines are noise (0.00-0.09)
    cosine = {"turn": 0.09, "doc1": 0.0, "doc2": 0.01, "doc3": 0.0, "gold": 0.0, "turn2": 0.02}
    bm25 = {"gold": 0.6}
    assert _top(cosine, bm25, RetrievalConfig()) == "gold"


def test_several_keyword_matches_still_rank_by_bm25() -> None:
    cosine = {m: 0.3 for m in "abcdef"}
    bm25 = {"a": 9.0, "b": 4.0, "c": 2.0}
    scores, _ = contextual_scores(list(cosine), cosine, bm25, {}, "q", RetrievalConfig(), scope_size=6)
    assert scores["a"] > scores["b"] > scores["c"] > scores["d"]


def test_when_every_memory_matches_small_bm25_differences_still_count() -> None:
    # no match is rare in the scope, so the keyword floor fades out and BM25 breaks the cosine tie
    cosine = {m: 0.05 for m in "abcd"}
    bm25 = {"a": 3.4e-6, "b": 3.7e-6, "c": 3.1e-6, "d": 3.5e-6}
    assert _top(cosine, bm25, RetrievalConfig()) == "b"


def test_no_floor_when_only_the_best_candidates_of_a_large_scope_are_scored() -> None:
    # scope_size None: the candidates are each signal's best, a truncated head; plain z-scores there
    cosine = {f"m{i}": 0.015 * i for i in range(16)} | {"piano": 0.40, "sense": 0.10}
    bm25 = {"sense": 3.6}
    new, _ = contextual_scores(list(cosine), cosine, bm25, {}, "q", RetrievalConfig(), scope_size=None)
    old, _ = contextual_scores(list(cosine), cosine, bm25, {}, "q", OLD, scope_size=None)
    assert new == old


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder()


FACTS = [
    "Drinks a double espresso as soon as they get up",
    "Started learning the cello last spring",
    "Volunteers at an animal shelter twice a month",
    "Plays padel on weekends",
    "Is allergic to peanuts",
    "Works as a nurse on night shifts",
    "Grew up in a small fishing village",
    "Has two daughters in primary school",
    "Reads crime novels on the train",
    "Is saving up for an electric car",
    "Keeps chickens in the back garden",
    "Supports the local rugby team",
    "Their partner is called Ines",
    "Moved to Glasgow in 2021",
    "Takes the ferry to the office",
    "Birthday is on 3 March",
    "Collects vinyl records of old jazz",
    "Hates the smell of coriander",
    "Runs a half marathon every autumn",
    "Owns a grey rabbit named Biscuit",
]


async def test_paraphrase_question_finds_the_fact_not_the_shared_word(
    store_factory: Callable[[], Store], minilm: MiniLMEmbedder
) -> None:
    """Only "get" (getting) is shared with the espresso fact; with plain z-scores that lone match won."""
    engine = AsyncMemory(store=store_factory(), embedder=minilm)
    try:
        for fact in FACTS:
            await engine.add(fact, user_id="u", infer=False)
        question = "When do they celebrate getting a year older?"
        found = await engine.search(question, user_id="u", top_k=3)
        assert found["results"][0]["memory"] == "Birthday is on 3 March"
    finally:
        await engine.close()

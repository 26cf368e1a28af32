"""Near-duplicate detection with the real bundled MiniLM embedder (the threshold is tuned on it)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engram import AsyncMemory
from engram.embedders.minilm import MiniLMEmbedder
from engram.inference import same_claims
from engram.stores.sqlite import SQLiteStore
from engram.testing import ScriptedLLM

THRESHOLD = 0.93  # the value docs/inference.md recommends for MiniLM


def facts(*texts: str, supersedes: list[str] | None = None) -> str:
    return json.dumps(
        {
            "facts": [
                {
                    "text": t,
                    "source_message_ids": ["m1"],
                    "attributed_to": "alice",
                    "supersedes": supersedes or [],
                }
                for t in texts
            ]
        }
    )


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest.fixture
async def engine(tmp_path: Path, minilm: MiniLMEmbedder) -> AsyncIterator[AsyncMemory]:
    llm = ScriptedLLM()
    memory = AsyncMemory(
        {"inference": {"near_duplicate_threshold": THRESHOLD}},
        store=SQLiteStore(path=tmp_path / "minilm.db"),
        embedder=minilm,
        llm=llm,
    )
    yield memory
    await memory.close()


def script(engine: AsyncMemory) -> ScriptedLLM:
    llm = engine._b.llm
    assert isinstance(llm, ScriptedLLM)
    return llm


# (stored, new, is a duplicate?) - measured cosines are in docs/inference.md
PAIRS = [
    ("Alice loves sci-fi movies", "Alice loves science fiction movies", True),
    ("Alice works as a nurse in Boston", "Alice is a nurse working in Boston", True),
    ("Alice is a vegan", "Alice is vegan", True),
    ("Alice likes sushi", "Alice likes ramen", False),
    ("Alice lives in Berlin", "Alice lives in Madrid", False),
    ("Bob has two kids", "Bob has three kids", False),
    ("Alice likes thriller movies", "Alice does not like thriller movies", False),
    ("Alice's birthday is on March 3", "Alice's birthday is on May 3", False),
    ("Alice is vegan", "Alice is vegetarian", False),
    ("Alice works at Google", "Alice works at Microsoft", False),
]


@pytest.mark.parametrize(("stored", "new", "duplicate"), PAIRS, ids=[f"{a} | {b}" for a, b, _ in PAIRS])
async def test_near_duplicates_with_minilm(
    engine: AsyncMemory, stored: str, new: str, duplicate: bool
) -> None:
    script(engine).push(facts(stored), facts(new))
    first = (await engine.add("first", user_id="alice"))["results"][0]
    second = (await engine.add("second", user_id="alice"))["results"][0]
    if duplicate:
        assert (second["event"], second["id"], second["memory"]) == ("NONE", first["id"], new)
        assert (await engine.get_all(user_id="alice"))["total"] == 1
    else:
        assert second["event"] == "ADD"
        assert (await engine.get_all(user_id="alice"))["total"] == 2


async def test_near_duplicates_only_within_the_exact_scope(engine: AsyncMemory) -> None:
    script(engine).push(facts("Alice loves sci-fi movies"), facts("Alice loves science fiction movies"))
    await engine.add("first", user_id="alice")
    other = (await engine.add("second", user_id="alice", agent_id="movie-bot"))["results"][0]
    assert other["event"] == "ADD"


async def test_a_superseded_memory_is_not_a_duplicate_of_its_replacement(engine: AsyncMemory) -> None:
    llm = script(engine)
    llm.push(facts("Alice loves sci-fi movies"))
    old = (await engine.add("first", user_id="alice"))["results"][0]
    llm.push(lambda messages: facts("Alice loves science fiction movies", supersedes=["r1"]))
    new = (await engine.add("second", user_id="alice"))["results"][0]
    assert new["event"] == "ADD"
    assert (await engine.get(old["id"]))["superseded_by"] == new["id"]  # type: ignore[index]


async def test_near_duplicates_inside_one_answer(engine: AsyncMemory) -> None:
    script(engine).push(
        facts("Alice loves sci-fi movies", "Alice loves science fiction movies", "Bob has two kids")
    )
    result = await engine.add("x", user_id="alice")
    assert [r["memory"] for r in result["results"]] == ["Alice loves sci-fi movies", "Bob has two kids"]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Bob has two kids", "Bob has 2 kids", True),
        ("Bob has two kids", "Bob has three kids", False),
        ("Alice likes spicy food", "Alice dislikes spicy food", False),
        ("Alice doesn't eat meat", "Alice eats meat", False),
        ("Alice meets Bob on Friday", "Alice meets Bob", False),
        ("alice loves sci-fi movies", "Alice loves science fiction movies", True),
    ],
)
def test_same_claims(a: str, b: str, same: bool) -> None:
    assert same_claims(a, b) is same

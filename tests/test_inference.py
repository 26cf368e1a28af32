"""infer=True end to end: AsyncMemory + SQLite store + FakeEmbedder + ScriptedLLM or the offline extractor."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from engram import AsyncMemory
from engram.errors import ExtractionError, RateLimitedError
from engram.interfaces import Store
from engram.stores.sqlite import SQLiteStore
from engram.testing import FakeEmbedder, ScriptedLLM, ScriptExhaustedError

MOVIES = [
    {"role": "user", "content": "I'm planning to watch a movie tonight. Any recommendations?"},
    {"role": "assistant", "content": "How about thriller movies? They can be quite engaging."},
    {"role": "user", "content": "I'm not a big fan of thriller movies but I love sci-fi movies."},
    {
        "role": "assistant",
        "content": "Got it! I'll avoid thriller recommendations and suggest sci-fi movies.",
    },
]


def facts(*items: dict[str, Any] | str) -> str:
    out = []
    for item in items:
        fact = {"text": item} if isinstance(item, str) else dict(item)
        fact.setdefault("source_message_ids", ["m1"])
        fact.setdefault("attributed_to", "alice")
        fact.setdefault("supersedes", [])
        out.append(fact)
    return json.dumps({"facts": out})


def alias_of(prompt_messages: list[dict[str, str]], needle: str) -> str:
    """The short id the prompt gave to the existing memory containing ``needle``."""
    found = re.search(rf"- (r\d+): [^\n]*{re.escape(needle)}", prompt_messages[-1]["content"])
    assert found, f"{needle!r} not among the related memories:\n{prompt_messages[-1]['content']}"
    return found.group(1)


@pytest.fixture
def store_factory(tmp_path: Path) -> Callable[[], Store]:
    """SQLite only here: the pipeline is store-agnostic and the store suites cover the backends."""
    return lambda: SQLiteStore(path=tmp_path / "inference.db")


@pytest.fixture
async def closer() -> AsyncIterator[list[AsyncMemory]]:
    engines: list[AsyncMemory] = []
    yield engines
    for engine in engines:
        await engine.close()


def engine_with(
    store_factory: Callable[[], Store],
    closer: list[AsyncMemory],
    llm: ScriptedLLM | None = None,
    **config: Any,
) -> AsyncMemory:
    engine = AsyncMemory(config or None, store=store_factory(), embedder=FakeEmbedder(), llm=llm)
    closer.append(engine)
    return engine


async def count(engine: AsyncMemory, user: str = "alice", **kw: Any) -> int:
    return int((await engine.get_all(user_id=user, **kw))["total"])


# -- dedup ---------------------------------------------------------------------------------------
async def test_same_conversation_three_times_offline(
    store_factory: Callable[[], Store], closer: list[AsyncMemory]
) -> None:
    engine = engine_with(store_factory, closer, llm_from_env=False)
    first = await engine.add(MOVIES, user_id="alice")
    assert first["extractor"] == "offline"
    texts = [r["memory"] for r in first["results"]]
    assert "alice is not a big fan of thriller movies" in texts
    assert "alice loves sci-fi movies" in texts
    assert all(r["event"] == "ADD" for r in first["results"])
    for _ in range(2):
        again = await engine.add(MOVIES, user_id="alice")
        assert {r["event"] for r in again["results"]} == {"NONE"}
        assert {r["id"] for r in again["results"]} == {r["id"] for r in first["results"]}
    assert await count(engine) == len(first["results"])
    hits = await engine.search("what movies does alice like", user_id="alice")
    assert hits["results"][0]["memory"] in {
        "alice loves sci-fi movies",
        "alice is not a big fan of thriller movies",
    }


async def test_same_conversation_three_times_llm(
    store_factory: Callable[[], Store], closer: list[AsyncMemory]
) -> None:
    reply = facts(
        {"text": "Alice is not a fan of thriller movies", "source_message_ids": ["m3"]},
        {"text": "Alice loves sci-fi movies", "source_message_ids": ["m3"]},
    )
    llm = ScriptedLLM([reply, reply, reply.replace("Alice loves", "alice   loves")])
    engine = engine_with(store_factory, closer, llm=llm)
    first = await engine.add(MOVIES, user_id="alice")
    assert first["extractor"] == "scripted"
    for _ in range(2):
        again = await engine.add(MOVIES, user_id="alice")
        assert [r["event"] for r in again["results"]] == ["NONE", "NONE"]
    assert await count(engine) == 2
    assert len(llm.calls) == 3  # one LLM call per add


async def test_duplicates_inside_one_answer_are_stored_once(
    store_factory: Callable[[], Store], closer: list[AsyncMemory]
) -> None:
    llm = ScriptedLLM([facts("Alice likes tea", {"text": "alice likes tea.", "source_message_ids": ["m2"]})])
    engine = engine_with(store_factory, closer, llm=llm)
    result = await engine.add(
        [{"role": "user", "content": "I like tea"}, {"role": "user", "content": "Tea!"}], user_id="alice"
    )
    assert [r["event"] for r in result["results"]] == ["ADD"]
    sources = await engine.sources(result["results"][0]["id"])
    assert [s["content"] for s in sources] == ["I like tea", "Tea!"]


async def test_dedup_across_infer_false_and_true(
    store_factory: Callable[[], Store], closer: list[AsyncMemory]
) -> None:
    llm = ScriptedLLM([facts("Alice likes green tea")])
    engine = engine_with(store_factory, closer, llm=llm)
    raw = await engine.add("Alice likes green tea", user_id="alice", infer=False)
    inferred = await engine.add("I like green tea, by the way", user_id="alice")
    assert inferred["results"][0]["event"] == "NONE"
    assert inferred["results"][0]["id"] == raw["results"][0]["id"]
    assert await count(engine) == 1


async def test_offline_fact_restating_a_raw_message_is_a_duplicate(
    store_factory: Callable[[], Store], closer: list[AsyncMemory]
) -> None:
    engine = engine_with(store_factory, closer, llm_from_env=False)
    raw = await engine.add("I love jazz and I live in Oslo.", user_id="alice", infer=False)
    inferred = await engine.add("I love jazz and I live in Oslo.", user_id="alice")
    assert {r["event"] for r in inferred["results"]} == {"NONE"}
    assert {r["id"] for r in inferred["results"]} == {raw["results"][0]["id"]}
    assert await count(engine) == 1


async def test_dedup_is_per_scope(store_factory: Callable[[], Store], closer: list[AsyncMemory]) -> None:
    llm = ScriptedLLM([facts("Likes tea"), facts("Likes tea")])
    engine = engine_with(store_factory, closer, llm=llm)
    await engine.add("I like tea", user_id="alice")
    other = await engine.add("I like tea", user_id="bob")
    assert other["results"][0]["event"] == "ADD"


async def test_concurrent_adds_store_a_fact_once(
    store_factory: Callable[[], Store], closer: list[AsyncMemory]
) -> None:
    llm = ScriptedLLM([facts("Alice likes tea")] * 4)
    engine = engine_with(store_factory, closer, llm=llm)
    results = await asyncio.gather(*(engine.add("I like tea", user_id="alice") for _ in range(4)))
    events = sorted(r["results"][0]["event"] for r in results)
    assert events.count("ADD") == 1
    assert await count(engine) == 1


# -- supersession ------------------------------------------------------------------------------------
async def test_berlin_then_madrid(store_factory: Callable[[], Store], closer: list[AsyncMemory]) -> None:
    def madrid(messages: list[dict[str, str]]) -> str:
        return facts({"text": "Alice lives in Madrid", "supersedes": [alias_of(messages, "Berlin")]})

    llm = ScriptedLLM([facts("Alice lives in Berlin"), madrid])
    engine = engine_with(store_factory, closer, llm=llm)
    berlin = (await engine.add("I live in Berlin.", user_id="alice", timestamp=1_700_000_000))["results"][0]
    moved = (await engine.add("I just moved to Madrid!", user_id="alice", timestamp=1_710_000_000))[
        "results"
    ][0]
    assert moved["event"] == "ADD"

    hits = await engine.search("where does the user live", user_id="alice")
    assert hits["results"][0]["memory"] == "Alice lives in Madrid"
    assert "Alice lives in Berlin" not in [h["memory"] for h in hits["results"]]
    everything = await engine.search("where does the user live", user_id="alice", include_superseded=True)
    assert {"Alice lives in Madrid", "Alice lives in Berlin"} <= {h["memory"] for h in everything["results"]}
    assert await count(engine) == 1
    assert await count(engine, include_superseded=True) == 2

    old = await engine.get(berlin["id"])
    assert old is not None and old["superseded_by"] == moved["id"] and old["valid_until"]
    history = await engine.history(berlin["id"])
    assert [h["event"] for h in history] == ["ADD", "SUPERSEDE"]
    assert "Madrid" in json.dumps(history[-1])


async def test_compatible_facts_both_stay_current(
    store_factory: Callable[[], Store], closer: list[AsyncMemory]
) -> None:
    llm = ScriptedLLM([facts("Alice likes sushi"), facts("Alice likes ramen")])
    engine = engine_with(store_factory, closer, llm=llm)
    await engine.add("I like sushi", user_id="alice")
    await engine.add("I like ramen too", user_id="alice")
    assert "r1: Alice likes sushi" in llm.calls[1].messages[-1]["content"]  # the model saw it
    assert {m["memory"] for m in (await engine.get_all(user_id="alice"))["results"]} == {
        "Alice likes sushi",
        "Alice likes ramen",
    }


async def test_unknown_ids_from_the_model_are_dropped(
    store_factory: Callable[[], Store], closer: list[AsyncMemory]
) -> None:
    llm = ScriptedLLM(
        [
            facts("Alice likes tea"),
            facts(
                {"text": "Alice likes coffee", "supersedes": ["r42", "nope"], "source_message_ids": ["m9"]}
            ),
        ]
    )
    engine = engine_with(store_factory, closer, llm=llm)
    tea = (await engine.add("I like tea", user_id="alice"))["results"][0]
    coffee = (await engine.add("I like coffee", user_id="alice"))["results"][0]
    assert (await engine.get(tea["id"]))["superseded_by"] is None  # type: ignore[index]
    assert [s["content"] for s in await engine.sources(coffee["id"])] == ["I like coffee"]


# -- context, provenance, instructions ---------------------------------------------------------------
async def test_prompt_has_messages_context_memories_and_instructions(
    store_factory: Callable[[], Store], closer: list[AsyncMemory]
) -> None:
    llm = ScriptedLLM([facts("Alice likes tea"), facts()])
    engine = engine_with(store_factory, closer, llm=llm, custom_instructions="Only remember drinks.")
    await engine.add(
        [{"role": "user", "content": "I like tea", "name": "Alice"}],
        user_id="alice",
        timestamp="2024-05-10T12:00:00Z",
    )
    await engine.add(
        [
            {"role": "user", "content": "Next month I fly to Lima"},
            {"role": "assistant", "content": "Have fun!"},
        ],
        user_id="alice",
        timestamp="2024-05-11T09:30:00Z",
        prompt="Also remember travel plans.",
    )
    system, user = llm.calls[1].messages
    assert "Only remember drinks." in system["content"]
    assert "Also remember travel plans." in system["content"]
    assert "supersede" in system["content"].lower()
    assert "2024-05-11" in user["content"]
    assert "r1: Alice likes tea" in user["content"]
    assert "[Alice, user]: I like tea" in user["content"]  # the earlier message, as context
    assert "m1 [alice, user]: Next month I fly to Lima" in user["content"]
    assert "m2 [Assistant, assistant]: Have fun!" in user["content"]
    assert llm.calls[0].json_schema is not None


async def test_provenance_and_attribution(
    store_factory: Callable[[], Store], closer: list[AsyncMemory]
) -> None:
    conversation = [
        {"role": "user", "content": "My sister Jane is a pilot.", "name": "Alice"},
        {"role": "assistant", "content": "Noted: Jane flies for a living.", "name": "Robo"},
    ]
    reply = facts(
        {"text": "Alice's sister Jane is a pilot", "source_message_ids": ["m1"], "attributed_to": "Alice"},
        {"text": "Robo will remember Jane's job", "source_message_ids": ["m2"], "attributed_to": "Robo"},
    )
    engine = engine_with(store_factory, closer, llm=ScriptedLLM([reply]))
    results = (await engine.add(conversation, user_id="alice", metadata={"topic": "family"}))["results"]
    first, second = [await engine.get(r["id"]) for r in results]
    assert first is not None and second is not None
    assert (first["actor_id"], first["role"], first["metadata"]) == ("Alice", "user", {"topic": "family"})
    assert (second["actor_id"], second["role"]) == ("Robo", "assistant")
    assert [s["content"] for s in await engine.sources(first["id"])] == ["My sister Jane is a pilot."]
    assert len(first["source_message_ids"]) == 1


async def test_honest_empty_answer_stores_nothing(
    store_factory: Callable[[], Store], closer: list[AsyncMemory]
) -> None:
    engine = engine_with(store_factory, closer, llm=ScriptedLLM([facts()]))
    result = await engine.add("hello!", user_id="alice")
    assert result["results"] == [] and result["extractor"] == "scripted"
    assert await count(engine) == 0


# -- failures ------------------------------------------------------------------------------------------
async def test_unusable_output_fails_loudly(
    store_factory: Callable[[], Store], closer: list[AsyncMemory]
) -> None:
    llm = ScriptedLLM(["Sure, Alice likes tea!", "I said: Alice likes tea."])
    engine = engine_with(store_factory, closer, llm=llm)
    with pytest.raises(ExtractionError) as info:
        await engine.add("I like tea", user_id="alice")
    assert "Sure, Alice likes tea!" in info.value.raw_output
    assert await count(engine) == 0


async def test_unusable_output_can_store_raw_instead(
    store_factory: Callable[[], Store], closer: list[AsyncMemory]
) -> None:
    llm = ScriptedLLM(["nope", "still nope"])
    engine = engine_with(store_factory, closer, llm=llm, inference={"on_extraction_failure": "store_raw"})
    result = await engine.add(
        [{"role": "system", "content": "be nice"}, {"role": "user", "content": "I like tea"}], user_id="alice"
    )
    assert [r["memory"] for r in result["results"]] == ["I like tea"]
    assert "extraction failed" in result["notes"][0]
    assert await count(engine) == 1


async def test_provider_errors_propagate_or_store_raw(
    store_factory: Callable[[], Store], closer: list[AsyncMemory]
) -> None:
    failing = ScriptedLLM([RateLimitedError("429", provider="scripted")])
    engine = engine_with(store_factory, closer, llm=failing)
    with pytest.raises(RateLimitedError):
        await engine.add("I like tea", user_id="alice")
    tolerant = engine_with(
        store_factory,
        closer,
        llm=ScriptedLLM([RateLimitedError("429", provider="scripted")]),
        inference={"on_extraction_failure": "store_raw"},
        namespace="other",
    )
    result = await tolerant.add("I like tea", user_id="alice")
    assert "RateLimitedError" in result["notes"][0]
    assert await count(tolerant) == 1


async def test_script_exhaustion_is_never_swallowed(
    store_factory: Callable[[], Store], closer: list[AsyncMemory]
) -> None:
    engine = engine_with(
        store_factory, closer, llm=ScriptedLLM([]), inference={"on_extraction_failure": "store_raw"}
    )
    with pytest.raises(ScriptExhaustedError):
        await engine.add("I like tea", user_id="alice")


async def test_corrective_retry_recovers(
    store_factory: Callable[[], Store], closer: list[AsyncMemory]
) -> None:
    llm = ScriptedLLM(["Alice likes tea.", facts("Alice likes tea")])
    engine = engine_with(store_factory, closer, llm=llm)
    result = await engine.add("I like tea", user_id="alice")
    assert [r["memory"] for r in result["results"]] == ["Alice likes tea"]
    assert len(llm.calls) == 2


def test_sync_facade_berlin_then_madrid(tmp_path: Path) -> None:
    from engram import Memory

    def madrid(messages: list[dict[str, str]]) -> str:
        return facts({"text": "User lives in Madrid", "supersedes": [alias_of(messages, "Berlin")]})

    llm = ScriptedLLM([facts("User lives in Berlin"), madrid])
    memory = Memory(store=SQLiteStore(path=tmp_path / "sync.db"), embedder=FakeEmbedder(), llm=llm)
    try:
        berlin = memory.add("I live in Berlin", user_id="u_1")["results"][0]
        madrid_id = memory.add("I moved to Madrid", user_id="u_1")["results"][0]["id"]
        assert "[User, user]: I live in Berlin" in llm.calls[1].prompt_text  # no name: "User"
        current = memory.search("where does the user live", user_id="u_1")["results"]
        assert [r["memory"] for r in current] == ["User lives in Madrid"]
        both = memory.search("where does the user live", user_id="u_1", include_superseded=True)["results"]
        assert {r["memory"] for r in both} == {"User lives in Madrid", "User lives in Berlin"}
        history = memory.history(berlin["id"])
        assert [h["event"] for h in history] == ["ADD", "SUPERSEDE"]
        assert (memory.get(berlin["id"]) or {})["superseded_by"] == madrid_id
    finally:
        memory.close()

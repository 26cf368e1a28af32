"""Named entities, profiles and summaries through the public API, on both stores (offline and LLM)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engram import AsyncMemory
from engram.cli import SEED_CONVERSATION
from engram.derived import EntityLink, EntityMention
from engram.embedders.fake import FakeEmbedder
from engram.entities import extract_entities, group_entities
from engram.errors import StoreError, ValidationError
from engram.llms.scripted import ScriptedLLM

# Hand-written conversations and what the rules must find in them: (name, type, aliases).
ENTITY_CASES: list[tuple[str, set[tuple[str, str, tuple[str, ...]]]]] = [
    ("My daughter Maya starts ballet lessons in September.", {("Maya", "person", ("daughter",))}),
    ("Our puppy is called Biscuit and he chews everything.", {("Biscuit", "pet", ("puppy",))}),
    ("We adopted a kitten named Pixel over the weekend.", {("Pixel", "pet", ("kitten",))}),
    (
        "I work at Northwind Labs and I live in Porto.",
        {("Northwind Labs", "organization", ()), ("Porto", "place", ())},
    ),
    ("Sam is my best friend from school.", {("Sam", "person", ("best friend",))}),
    ("I just bought a new MacBook Pro for work.", {("MacBook Pro", "product", ())}),
    (
        "Grabbed coffee with Priya at Harbor Street Cafe.",
        {("Priya", "person", ()), ("Harbor Street Cafe", "place", ())},
    ),
    ("Maya's recital is on March 14.", {("Maya's recital", "event", ()), ("Maya", "person", ())}),
    ("I'm flying to New York next month for a conference.", {("New York", "place", ())}),
    ("I'm not a big fan of thriller movies, but I love sci-fi.", set()),
]


@pytest.mark.parametrize(("text", "expected"), ENTITY_CASES)
def test_offline_entity_rules(text: str, expected: set[tuple[str, str, tuple[str, ...]]]) -> None:
    found = {(m.name, m.type, m.aliases) for m in extract_entities(text)}
    assert found == expected


def test_event_dates_and_excluded_speaker() -> None:
    found = extract_entities("Jonas has his dentist appointment on 2026-05-02.", exclude=("Jonas",))
    assert [(m.name, m.type, m.date) for m in found] == [("appointment", "event", "2026-05-02")]


def test_bare_relation_joins_the_named_entity() -> None:
    links = [
        EntityLink("m1", EntityMention("Maya", "person", ("daughter",))),
        EntityLink("m2", EntityMention("daughter", "person", ("daughter",))),
        EntityLink("m3", EntityMention("friend", "person", ("friend",))),  # names nobody: left out
    ]
    [maya] = group_entities(links)
    assert (maya.name, maya.aliases, maya.memory_ids) == ("Maya", ["daughter"], ["m1", "m2"])


FAMILY = [
    {"role": "user", "content": "My daughter Maya started ballet lessons this autumn."},
    {"role": "assistant", "content": "That's lovely! How is she finding it?"},
    {"role": "user", "content": "She loves it. My dog Rex hates being left alone though."},
]


async def test_entities_links_and_entity_filter(amem: AsyncMemory) -> None:
    await amem.add(FAMILY, user_id="nora")
    await amem.add("My daughter has a recital on 2026-12-11.", user_id="nora", infer=False)
    await amem.add("I work at Northwind Labs in Porto.", user_id="nora")
    await amem.add("My daughter Maya plays chess.", user_id="other-user", infer=False)
    found = (await amem.entities(user_id="nora"))["results"]
    by_name = {e["name"]: e for e in found}
    assert set(by_name) >= {"Maya", "Rex", "Northwind Labs", "Porto", "recital"}
    assert by_name["Maya"]["type"] == "person" and by_name["Maya"]["aliases"] == ["daughter"]
    assert by_name["Maya"]["mentions"] == 2  # "my daughter" alone resolves to Maya
    assert by_name["Rex"]["type"] == "pet" and by_name["recital"]["dates"] == ["2026-12-11"]
    maya = await amem.get_all(filters={"user_id": "nora", "entity": "Maya"})
    assert maya["total"] == 2 and all(r["user_id"] == "nora" for r in maya["results"])
    alias = await amem.get_all(filters={"user_id": "nora", "entity": "my daughter"})
    assert {r["id"] for r in alias["results"]} == {r["id"] for r in maya["results"]}
    not_maya = await amem.get_all(filters={"user_id": "nora", "entity": {"ne": "Maya"}})
    assert not_maya["total"] == (await amem.get_all(user_id="nora"))["total"] - 2
    either = await amem.get_all(filters={"user_id": "nora", "OR": [{"entity": "Rex"}, {"entity": "Porto"}]})
    assert either["total"] == 2
    searched = await amem.search("ballet", filters={"user_id": "nora", "entity": "Rex"})
    assert [r["memory"] for r in searched["results"]] == ["nora's dog Rex hates being left alone"]
    assert (await amem.get_all(filters={"user_id": "nora", "entity": "Nobody"}))["total"] == 0


async def test_deleted_memories_leave_the_entity_list(amem: AsyncMemory) -> None:
    added = await amem.add("My cat Miso sleeps all day.", user_id="ivo", infer=False)
    assert [e["name"] for e in (await amem.entities(user_id="ivo"))["results"]] == ["Miso"]
    await amem.delete(added["results"][0]["id"])
    assert (await amem.entities(user_id="ivo"))["results"] == []


async def test_quickstart_profile_offline(amem: AsyncMemory) -> None:
    await amem.add(SEED_CONVERSATION, user_id="alice", app_id="engram-quickstart")
    profile = await amem.profile("alice")
    assert profile["status"] == "succeeded" and profile["builder"] == "offline" and not profile["stale"]
    assert profile["profile"]["preferences"] == [
        "alice loves sci-fi movies",
        "alice is not a big fan of thriller movies",
    ]
    assert profile["generation_count"] == 1 and len(profile["memory_ids"]) == 3


DIARY = [
    {"role": "user", "content": "I'm Tomas, a nurse, and I live in Ghent."},
    {"role": "user", "content": "I'm vegetarian and allergic to shellfish."},
    {"role": "user", "content": "My husband Pieter bakes bread every Sunday."},
    {"role": "user", "content": "I'm training for a half marathon in the spring."},
    {"role": "user", "content": "I'm going to Lisbon next week with Pieter."},
    {"role": "user", "content": "I really enjoy jazz records."},
]


async def test_profile_sections_staleness_and_refresh(amem: AsyncMemory) -> None:
    await amem.add(DIARY, user_id="tomas")
    profile = await amem.profile("tomas")
    sections = profile["profile"]
    assert set(sections) == {
        "identity",
        "preferences",
        "constraints",
        "relationships",
        "goals",
        "recent_plans",
    }
    assert any("vegetarian" in s for s in sections["constraints"])
    assert any("shellfish" in s for s in sections["constraints"])
    assert any("Pieter" in s for s in sections["relationships"])
    assert any("half marathon" in s for s in sections["goals"])
    assert any("jazz" in s for s in sections["preferences"])
    assert any("nurse" in s or "Ghent" in s for s in sections["identity"])
    await amem.add("I started learning Portuguese.", user_id="tomas", infer=False)
    assert (await amem.profile("tomas"))["stale"] is True
    fresh = await amem.refresh_profile("tomas")
    assert fresh["stale"] is False and fresh["generation_count"] == 2
    assert any("Portuguese" in s for s in fresh["profile"]["goals"])
    assert (await amem.profile("tomas"))["stale"] is False


async def test_profile_without_memories_and_custom_schema(amem: AsyncMemory) -> None:
    assert (await amem.profile("ghost"))["status"] == "insufficient_data"
    await amem.add("I'm allergic to cats and I love hiking.", user_id="lea", infer=False)
    schema = {"type": "object", "properties": {"health": {"type": "array", "description": "allergies"}}}
    built = await amem.refresh_profile("lea", schema=schema)
    assert built["profile"] == {"health": ["I'm allergic to cats and I love hiking."]}
    with pytest.raises(ValidationError, match="description"):
        await amem.refresh_profile("lea", schema={"type": "object", "properties": {"x": {}}})


async def test_delete_all_forgets_the_profile(amem: AsyncMemory) -> None:
    await amem.add("I love sci-fi movies.", user_id="bo", infer=False)
    assert (await amem.profile("bo"))["status"] == "succeeded"
    await amem.delete_all(user_id="bo")
    assert (await amem.profile("bo", build=False))["status"] == "insufficient_data"
    assert await amem.store.get_profile(amem.namespace, "bo") is None


async def test_summary_lists_its_sources(amem: AsyncMemory) -> None:
    await amem.add(DIARY, user_id="tomas")
    summary = await amem.summary(filters={"user_id": "tomas"})
    listed = await amem.get_all(user_id="tomas")
    assert (
        summary["memory_ids"] == [r["id"] for r in listed["results"]] and summary["count"] == listed["total"]
    )
    assert summary["summarizer"] == "offline"
    assert "Constraints: " in summary["summary"] and "vegetarian" in summary["summary"]
    only_pieter = await amem.summary(filters={"user_id": "tomas", "entity": "Pieter"})
    assert only_pieter["count"] == 2 and "Pieter" in only_pieter["summary"]


def _extraction(facts: list[dict[str, Any]]) -> str:
    return json.dumps({"facts": facts})


async def test_llm_extraction_supplies_entities(store_factory: Any) -> None:
    llm = ScriptedLLM(
        [
            _extraction(
                [
                    {
                        "text": "Nora's daughter Maya dances ballet",
                        "source_message_ids": ["m1"],
                        "attributed_to": "user",
                        "supersedes": [],
                        "entities": [{"name": "Maya", "type": "person", "aliases": ["daughter", "Mayita"]}],
                    },
                    {
                        "text": "Nora visited Oslo",
                        "source_message_ids": ["m1"],
                        "attributed_to": "user",
                        "supersedes": [],
                        "entities": [],  # the model says: nothing named here
                    },
                ]
            ),
            json.dumps({"profile": {"relationships": ["Daughter Maya dances ballet"], "identity": []}}),
            "Nora's daughter Maya dances ballet.",
        ]
    )
    engine = AsyncMemory(store=store_factory(), embedder=FakeEmbedder(), llm=llm)
    try:
        await engine.add("My daughter Maya does ballet. I went to Oslo.", user_id="nora")
        assert '"entities"' in json.dumps(llm.calls[0].json_schema)
        entities = (await engine.entities(user_id="nora"))["results"]
        assert [(e["name"], e["aliases"]) for e in entities] == [("Maya", ["daughter", "mayita"])]
        assert (await engine.get_all(filters={"user_id": "nora", "entity": "Mayita"}))["total"] == 1
        profile = await engine.profile("nora")
        assert profile["builder"] == "scripted"
        assert profile["profile"]["relationships"] == ["Daughter Maya dances ballet"]
        assert profile["profile"]["goals"] == []  # sections the model left out are empty
        assert "Nora visited Oslo" in llm.calls[1].prompt_text
        summary = await engine.summary(user_id="nora")
        assert summary == {
            "summary": "Nora's daughter Maya dances ballet.",
            "memory_ids": summary["memory_ids"],
            "count": 2,
            "summarizer": "scripted",
        }
    finally:
        await engine.close()


async def test_llm_profile_failure_falls_back_to_offline(store_factory: Any) -> None:
    llm = ScriptedLLM(["not json at all ["])
    engine = AsyncMemory(store=store_factory(), embedder=FakeEmbedder(), llm=llm)
    try:
        await engine.add("I love sci-fi movies.", user_id="kai", infer=False)
        profile = await engine.refresh_profile("kai")
        assert profile["builder"] == "offline" and profile["notes"]
        assert profile["profile"]["preferences"] == ["I love sci-fi movies."]
    finally:
        await engine.close()


async def test_update_relinks_the_new_text(amem: AsyncMemory) -> None:
    added = await amem.add("My cat Miso sleeps all day.", user_id="ivo", infer=False)
    await amem.update(added["results"][0]["id"], text="My dog Pepper sleeps all day.")
    assert [(e["name"], e["type"]) for e in (await amem.entities(user_id="ivo"))["results"]] == [
        ("Pepper", "pet")
    ]
    assert (await amem.get_all(filters={"user_id": "ivo", "entity": "Miso"}))["total"] == 0


async def test_entity_links_commit_with_their_memories(
    amem: AsyncMemory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An add and its entity links are one transaction: when recording the links fails, the memory,
    its message and its history are not stored either."""
    from engram.stores.sql import derived

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise StoreError("entity links: disk full")

    monkeypatch.setattr(derived, "link", broken)
    with pytest.raises(StoreError, match="disk full"):
        await amem.add("Grabbed coffee with Priya at Harbor Street Cafe.", user_id="tx", infer=False)
    monkeypatch.undo()
    assert (await amem.get_all(user_id="tx"))["results"] == []
    assert (await amem.entities(user_id="tx"))["results"] == []
    added = await amem.add("Grabbed coffee with Priya at Harbor Street Cafe.", user_id="tx", infer=False)
    assert added["results"][0]["event"] == "ADD"  # nothing half-written blocked the retry
    names = {e["name"] for e in (await amem.entities(user_id="tx"))["results"]}
    assert {"Priya", "Harbor Street Cafe"} <= names

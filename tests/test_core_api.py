"""mem0-style calls and result shapes through the public API (sync facade and async engine)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from engram import AsyncMemory, Memory
from engram.errors import (
    ConflictError,
    EngramError,
    NotFoundError,
    ScopeRequiredError,
    ValidationError,
)
from tests.conftest import ids

MOVIE_CHAT = [
    {"role": "user", "content": "I'm planning to watch a movie tonight. Any recommendations?"},
    {"role": "assistant", "content": "How about thriller movies? They can be quite engaging."},
    {"role": "user", "content": "I'm not a big fan of thriller movies but I love sci-fi movies."},
    {"role": "assistant", "content": "Got it! I'll avoid thrillers and suggest sci-fi movies in the future."},
]
ITEM_KEYS = {
    "id",
    "memory",
    "hash",
    "metadata",
    "user_id",
    "agent_id",
    "app_id",
    "run_id",
    "actor_id",
    "role",
    "created_at",
    "updated_at",
    "expiration_date",
}


def test_mem0_documented_flow(mem: Memory) -> None:
    result = mem.add(MOVIE_CHAT, user_id="alice", metadata={"category": "movies"}, infer=False)
    assert [r["event"] for r in result["results"]] == ["ADD"] * 4
    assert all({"id", "memory", "event"} <= r.keys() for r in result["results"])

    related = mem.search(query="What movies does alice like? sci-fi", filters={"user_id": "alice"})
    assert related["results"], "search found nothing"
    top = related["results"][0]
    assert ITEM_KEYS | {"score"} <= top.keys()
    assert "sci-fi" in top["memory"]
    assert top["metadata"] == {"category": "movies"}
    assert top["user_id"] == "alice"

    old_style = mem.search("sci-fi movies", user_id="alice", limit=2)  # mem0 1.x keyword style
    assert len(old_style["results"]) == 2

    everything = mem.get_all(filters={"user_id": "alice"})
    assert len(everything["results"]) == 4

    memory_id = top["id"]
    specific = mem.get(memory_id)
    assert specific is not None and specific["id"] == memory_id and specific.keys() >= ITEM_KEYS

    updated = mem.update(memory_id=memory_id, data="Alice loves science fiction films.")
    assert "message" in updated
    assert mem.get(memory_id)["memory"] == "Alice loves science fiction films."  # type: ignore[index]

    history = mem.history(memory_id=memory_id)
    assert [h["event"] for h in history] == ["ADD", "UPDATE"]
    assert history[1]["old_memory"] == top["memory"]
    assert history[1]["new_memory"] == "Alice loves science fiction films."
    assert {"id", "memory_id", "old_memory", "new_memory", "event", "created_at"} <= history[0].keys()

    mem.delete(memory_id=memory_id)
    assert mem.get(memory_id) is None
    assert [h["event"] for h in mem.history(memory_id)] == ["ADD", "UPDATE", "DELETE"]

    mem.delete_all(user_id="alice")
    assert mem.get_all(user_id="alice")["results"] == []
    mem.reset()


async def test_async_twin_has_the_same_api(amem: AsyncMemory) -> None:
    added = await amem.add("I drink oat milk", user_id="u1", infer=False)
    mid = added["results"][0]["id"]
    assert (await amem.get(mid))["memory"] == "I drink oat milk"  # type: ignore[index]
    assert ids(await amem.search("oat milk", user_id="u1")) == [mid]
    for name in ("add", "search", "get", "get_all", "update", "delete", "delete_all", "history", "reset"):
        assert getattr(Memory, name).__doc__ == getattr(AsyncMemory, name).__doc__


async def test_roles_names_and_provenance(amem: AsyncMemory) -> None:
    result = await amem.add(
        [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "My dog is called Rex", "name": "alice"},
            {"role": "assistant", "content": "Rex is a great name!"},
        ],
        user_id="alice",
        infer=False,
    )
    assert len(result["results"]) == 2  # the system message is not a memory
    user_item = await amem.get(result["results"][0]["id"])
    assert user_item is not None
    assert user_item["role"] == "user" and user_item["actor_id"] == "alice"
    sources = await amem.sources(user_item["id"])
    assert [s["content"] for s in sources] == ["My dog is called Rex"]
    assert sources[0]["id"] == user_item["source_message_ids"][0]
    assistant = await amem.get(result["results"][1]["id"])
    assert assistant is not None and assistant["role"] == "assistant" and assistant["actor_id"] is None


async def test_exact_duplicate_is_reported_not_stored(amem: AsyncMemory) -> None:
    first = await amem.add("I live in Lisbon.", user_id="u", infer=False)
    again = await amem.add("i live in lisbon", user_id="u", infer=False)
    assert again["results"][0]["event"] == "NONE"
    assert again["results"][0]["id"] == first["results"][0]["id"]
    assert (await amem.get_all(user_id="u"))["total"] == 1
    item = await amem.get(first["results"][0]["id"])
    assert item is not None and len(item["source_message_ids"]) == 2  # both messages are provenance
    other_scope = await amem.add("I live in Lisbon.", user_id="v", infer=False)
    assert other_scope["results"][0]["event"] == "ADD"


async def test_scope_isolation(amem: AsyncMemory) -> None:
    await amem.add("alice likes green tea", user_id="alice", infer=False)
    await amem.add("bob likes green tea", user_id="bob", infer=False)
    await amem.add("agent note about green tea", agent_id="helper", infer=False)
    for filters in (None, {"OR": [{"user_id": "bob"}]}, {"NOT": [{"user_id": "alice"}]}, {"agent_id": "*"}):
        found = await amem.search("green tea", user_id="alice", filters=filters)
        assert all(r["user_id"] == "alice" for r in found["results"]), filters
    listed = await amem.get_all(user_id="alice")
    assert [r["memory"] for r in listed["results"]] == ["alice likes green tea"]
    assert (await amem.get_all(agent_id="helper"))["total"] == 1


async def test_delete_all_only_touches_its_scope(amem: AsyncMemory) -> None:
    await amem.add("a1", user_id="alice", infer=False)
    await amem.add("a2", user_id="alice", run_id="r1", infer=False)
    await amem.add("b1", user_id="bob", infer=False)
    await amem.add("r-only", run_id="r1", infer=False)
    with pytest.raises(ScopeRequiredError):
        await amem.delete_all()
    deleted = await amem.delete_all(user_id="alice", run_id="r1")
    assert deleted["deleted"] == 1
    assert (await amem.get_all(user_id="alice"))["total"] == 1
    await amem.delete_all(user_id="alice")
    assert (await amem.get_all(user_id="alice"))["total"] == 0
    assert (await amem.get_all(user_id="bob"))["total"] == 1
    assert (await amem.get_all(run_id="r1"))["total"] == 1


async def test_update_and_delete_history(amem: AsyncMemory) -> None:
    mid = (await amem.add("favourite colour is blue", user_id="u", infer=False))["results"][0]["id"]
    await amem.update(mid, metadata={"source": "chat"})
    await amem.update(mid, "favourite colour is green")
    await amem.delete(mid)
    events = await amem.history(mid)
    assert [e["event"] for e in events] == ["ADD", "UPDATE", "UPDATE", "DELETE"]
    assert events[-1]["old_memory"] == "favourite colour is green" and events[-1]["is_deleted"]
    with pytest.raises(NotFoundError):
        await amem.delete(mid)
    with pytest.raises(NotFoundError):
        await amem.update(mid, "x")
    assert await amem.get("no-such-id") is None


async def test_update_to_an_existing_text_conflicts(amem: AsyncMemory) -> None:
    a = (await amem.add("fact one", user_id="u", infer=False))["results"][0]["id"]
    await amem.add("fact two", user_id="u", infer=False)
    with pytest.raises(ConflictError):
        await amem.update(a, "Fact two.")
    assert (await amem.get(a))["memory"] == "fact one"  # type: ignore[index]


async def test_expiration(amem: AsyncMemory) -> None:
    await amem.add("old promo code", user_id="u", infer=False, expiration_date="2000-01-01")
    await amem.add("current promo code", user_id="u", infer=False, expiration_date="2999-01-01")
    today = dt.date.today().isoformat()
    await amem.add("last day promo code", user_id="u", infer=False, expiration_date=today)
    visible = {r["memory"] for r in (await amem.search("promo code", user_id="u"))["results"]}
    assert visible == {"current promo code", "last day promo code"}
    everything = await amem.search("promo code", user_id="u", show_expired=True)
    assert len(everything["results"]) == 3
    assert (await amem.get_all(user_id="u"))["total"] == 2
    assert (await amem.get_all(user_id="u", show_expired=True))["total"] == 3
    listed = await amem.get_all(user_id="u", show_expired=True)
    assert {r["expiration_date"] for r in listed["results"]} == {"2000-01-01", "2999-01-01", today}


async def test_update_sets_and_clears_expiration(amem: AsyncMemory) -> None:
    added = await amem.add("promo code SPRING", user_id="u", infer=False)
    memory_id = added["results"][0]["id"]
    await amem.update(memory_id, expiration_date="2000-01-01")
    assert (await amem.get_all(user_id="u"))["total"] == 0  # expired now
    assert (await amem.get(memory_id))["expiration_date"] == "2000-01-01"
    await amem.update(memory_id, clear_expiration=True)
    item = await amem.get(memory_id)
    assert item["expiration_date"] is None and item["memory"] == "promo code SPRING"
    assert (await amem.get_all(user_id="u"))["total"] == 1
    history = await amem.history(memory_id)
    assert [h["event"] for h in history] == ["ADD", "UPDATE", "UPDATE"]
    assert [h["details"]["expiration_date"] for h in history[1:]] == ["2000-01-01", None]
    with pytest.raises(ValidationError):
        await amem.update(memory_id, expiration_date="2030-01-01", clear_expiration=True)
    with pytest.raises(ValidationError):
        await amem.update(memory_id, expiration_date="next week")


async def test_timestamp_is_observation_time(amem: AsyncMemory) -> None:
    await amem.add("met Carla", user_id="u", infer=False, timestamp=1_700_000_000)
    await amem.add("met Dario", user_id="u", infer=False, timestamp="2023-01-05T10:00:00Z")
    await amem.add("met Enzo", user_id="u", infer=False, timestamp="2024-06-01")
    listed = (await amem.get_all(user_id="u"))["results"]
    assert [r["memory"] for r in listed] == ["met Enzo", "met Carla", "met Dario"]  # newest observation first
    assert listed[1]["observed_at"].startswith("2023-11-14T22:13:20")
    older = await amem.get_all(user_id="u", filters={"observed_at": {"lt": "2023-06-01"}})
    assert [r["memory"] for r in older["results"]] == ["met Dario"]


async def test_scope_keys_in_metadata_are_not_scope(amem: AsyncMemory) -> None:
    with pytest.warns(UserWarning, match="user_id"):
        added = await amem.add("sneaky", user_id="alice", metadata={"user_id": "bob", "k": 1}, infer=False)
    item = await amem.get(added["results"][0]["id"])
    assert item is not None and item["user_id"] == "alice" and item["metadata"] == {"k": 1}
    assert (await amem.get_all(user_id="bob"))["total"] == 0


BAD_ADDS: list[tuple[dict[str, Any], str]] = [
    ({"messages": "hi"}, "user_id"),  # no scope at all
    ({"messages": "hi", "user_id": ""}, "user_id"),
    ({"messages": "hi", "user_id": 5}, "user_id"),
    ({"messages": "hi", "agent_id": "x" * 300}, "agent_id"),
    ({"messages": 42, "user_id": "u"}, "messages"),
    ({"messages": [], "user_id": "u"}, "messages"),
    ({"messages": ["hi"], "user_id": "u"}, "messages[0]"),
    ({"messages": [{"role": "user"}], "user_id": "u"}, "messages[0].content"),
    ({"messages": [{"role": "", "content": "x"}], "user_id": "u"}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "x", "name": 3}], "user_id": "u"}, "messages[0].name"),
    ({"messages": "hi", "user_id": "u", "metadata": "x"}, "metadata"),
    ({"messages": "hi", "user_id": "u", "metadata": {"f": object()}}, "metadata"),
    ({"messages": "hi", "user_id": "u", "metadata": {"f": float("nan")}}, "metadata"),
    ({"messages": "hi", "user_id": "u", "timestamp": "last tuesday"}, "timestamp"),
    ({"messages": "hi", "user_id": "u", "timestamp": True}, "timestamp"),
    ({"messages": "hi", "user_id": "u", "expiration_date": "tomorrow"}, "expiration_date"),
    ({"messages": "hi", "user_id": "u", "expiration_date": 20240101}, "expiration_date"),
    ({"messages": "hi", "user_id": "u", "prompt": 7}, "prompt"),
    ({"messages": "hi", "user_id": "u", "infer": "no"}, "infer"),
]


@pytest.mark.parametrize(("kwargs", "field"), BAD_ADDS, ids=[b[1] + str(i) for i, b in enumerate(BAD_ADDS)])
async def test_bad_add_names_the_field_and_stores_nothing(
    amem: AsyncMemory, kwargs: dict[str, Any], field: str
) -> None:
    kwargs = {"infer": False, **kwargs}
    messages = kwargs.pop("messages")
    with pytest.raises(ValidationError) as info:
        await amem.add(messages, **kwargs)
    assert info.value.details.get("field") == field, info.value
    assert (await amem.get_all(user_id="u"))["total"] == 0


BAD_SEARCHES: list[tuple[dict[str, Any], str]] = [
    ({"query": ""}, "query"),
    ({"query": None}, "query"),
    ({"query": "x", "top_k": 0}, "top_k"),
    ({"query": "x", "top_k": "5"}, "top_k"),
    ({"query": "x", "threshold": 2}, "threshold"),
    ({"query": "x", "threshold": "high"}, "threshold"),
]


@pytest.mark.parametrize(
    ("kwargs", "field"), BAD_SEARCHES, ids=[b[1] + str(i) for i, b in enumerate(BAD_SEARCHES)]
)
async def test_bad_search_names_the_field(amem: AsyncMemory, kwargs: dict[str, Any], field: str) -> None:
    kwargs = dict(kwargs)  # parametrized values are shared between store backends
    query = kwargs.pop("query")
    with pytest.raises(ValidationError) as info:
        await amem.search(query, user_id="u", **kwargs)
    assert info.value.details.get("field") == field


async def test_bad_update_inputs(amem: AsyncMemory) -> None:
    mid = (await amem.add("x", user_id="u", infer=False))["results"][0]["id"]
    for kwargs in ({}, {"text": ""}, {"text": 5}, {"metadata": []}):
        with pytest.raises(ValidationError):
            await amem.update(mid, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await amem.get("")
    assert [h["event"] for h in await amem.history(mid)] == ["ADD"]


async def test_errors_share_one_base(amem: AsyncMemory) -> None:
    with pytest.raises(EngramError):
        await amem.add("x", infer=False)


async def test_threshold_and_explain(amem: AsyncMemory) -> None:
    await amem.add(
        [{"role": "user", "content": c} for c in ("red apples", "green pears", "blue skies")],
        user_id="u",
        infer=False,
    )
    found = await amem.search("red apples", user_id="u", explain=True)
    top = found["results"][0]
    assert top["memory"] == "red apples"
    assert {"vector", "keyword", "fused", "weights"} <= top["explain"].keys()
    assert top["score"] == pytest.approx(top["explain"]["fused"], abs=1e-6)
    strict = await amem.search("red apples", user_id="u", threshold=top["score"])
    assert [r["memory"] for r in strict["results"]] == ["red apples"]


async def test_namespace_views_are_isolated(amem: AsyncMemory) -> None:
    p1, p2 = amem.namespace_view("project-1"), amem.namespace_view("project-2")
    mid = (await p1.add("secret plan", user_id="u", infer=False))["results"][0]["id"]
    assert await p2.get(mid) is None
    assert (await p2.search("secret plan", user_id="u"))["results"] == []
    with pytest.raises(NotFoundError):
        await p2.delete(mid)
    await p2.reset()
    assert await p1.get(mid) is not None


async def test_infer_false_after_infer_true_does_not_double_store(amem: AsyncMemory) -> None:
    chat = [{"role": "user", "name": "alice", "content": "I love sci-fi movies."}]
    inferred = await amem.add(chat, user_id="alice")
    assert [r["event"] for r in inferred["results"]] == ["ADD"]
    raw = await amem.add(chat, user_id="alice", infer=False)
    assert [r["event"] for r in raw["results"]] == ["NONE"]
    assert raw["results"][0]["id"] == inferred["results"][0]["id"]
    assert (await amem.get_all(user_id="alice"))["total"] == 1
    sources = await amem.sources(inferred["results"][0]["id"])
    assert len(sources) == 2  # both messages are provenance of the one memory
    other = await amem.add("I love sci-fi movies.", user_id="bob", infer=False)
    assert other["results"][0]["event"] == "ADD"  # another scope is another memory

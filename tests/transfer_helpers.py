"""A store with a bit of everything (scopes, metadata, expiry, supersession, updates, deletes, provenance)
for the export/import tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engram import AsyncMemory
from engram.stores.sqlite import SQLiteStore
from engram.testing import FakeEmbedder, ScriptedLLM


def _facts(*items: dict[str, Any]) -> str:
    return json.dumps({"facts": [{"source_message_ids": ["m1"], "supersedes": [], **i} for i in items]})


def _madrid(messages: list[dict[str, str]]) -> str:
    import re

    found = re.search(r"- (r\d+): [^\n]*Berlin", messages[-1]["content"])
    assert found, messages[-1]["content"]
    return _facts({"text": "Alice lives in Madrid", "supersedes": [found.group(1)]})


def scripted_llm() -> ScriptedLLM:
    """The replies :func:`fill` needs, in order."""
    return ScriptedLLM(
        [_facts({"text": "Alice lives in Berlin"}, {"text": "Alice works as a nurse"}), _madrid]
    )


async def fill(engine: AsyncMemory) -> dict[str, str]:
    """Store the sample memories; returns some of their ids by name."""
    ids: dict[str, str] = {}
    first = await engine.add(
        "I live in Berlin and work as a nurse.", user_id="alice", timestamp=1_700_000_000
    )
    ids["berlin"] = first["results"][0]["id"]
    ids["nurse"] = first["results"][1]["id"]
    await engine.add("I just moved to Madrid!", user_id="alice", timestamp=1_710_000_000)
    raw = await engine.add(
        [{"role": "user", "name": "alice", "content": "I prefer window seats"},
         {"role": "assistant", "content": "Noted: window seats."}],
        user_id="alice", agent_id="travel-bot", run_id="trip-1", infer=False,
        metadata={"topic": "travel", "priority": 2, "tags": ["seat", "plane"]},
        expiration_date="2031-01-01", timestamp=1_720_000_000,
    )  # fmt: skip
    ids["window"] = raw["results"][0]["id"]
    await engine.add("Ünïcode: naïve café ☕", user_id="bob", app_id="cafe", infer=False)
    tea = await engine.add("Bob drinks tea", user_id="bob", infer=False, metadata={"n": 1.5})
    ids["tea"] = tea["results"][0]["id"]
    await engine.update(ids["tea"], "Bob drinks green tea", metadata={"n": 2})
    gone = await engine.add("temporary note", user_id="bob", infer=False)
    await engine.delete(gone["results"][0]["id"])
    old = await engine.add("an old expired fact", user_id="carol", infer=False, expiration_date="2020-01-01")
    ids["expired"] = old["results"][0]["id"]
    return ids


async def filled_source(path: Path) -> AsyncMemory:
    """An engine on a new SQLite store at ``path`` holding the sample memories (:func:`fill`)."""
    engine = AsyncMemory(store=SQLiteStore(path=path), embedder=FakeEmbedder(), llm=scripted_llm())
    await fill(engine)
    return engine


async def everything(engine: AsyncMemory) -> dict[str, Any]:
    """What a user sees of every sample memory: get_all of each scope (all visibilities), and history."""
    seen: dict[str, Any] = {}
    for user in ("alice", "bob", "carol"):
        listed = await engine.get_all(user_id=user, include_superseded=True, show_expired=True)
        seen[user] = listed
        for item in listed["results"]:
            seen[item["id"]] = {"history": await engine.history(item["id"]),
                                "sources": await engine.sources(item["id"])}  # fmt: skip
    return seen

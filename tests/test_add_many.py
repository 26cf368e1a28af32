"""add_many: one embedding call for many adds, same results as add, nothing written on a bad item."""

from __future__ import annotations

from pathlib import Path

import pytest

from engram import AsyncMemory, Memory
from engram.embedders.fake import FakeEmbedder
from engram.errors import ValidationError
from engram.stores.sqlite import SQLiteStore


async def test_fifty_messages_in_one_add_are_one_model_call(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    engine = AsyncMemory(store=SQLiteStore(path=tmp_path / "a.db"), embedder=embedder)
    try:
        await engine.add("warm up", user_id="u", infer=False)
        before = embedder.calls
        messages = [{"role": "user", "content": f"fact number {i} about topic {i}"} for i in range(50)]
        out = await engine.add(messages, user_id="u", infer=False)
        assert len(out["results"]) == 50
        assert embedder.calls == before + 1
    finally:
        await engine.close()


async def test_add_many_embeds_all_adds_in_one_call(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    engine = AsyncMemory(store=SQLiteStore(path=tmp_path / "b.db"), embedder=embedder)
    try:
        items = [
            {"messages": f"note {i}: the locker code is {1000 + i}", "user_id": f"u{i % 3}", "infer": False}
            for i in range(30)
        ]
        await engine.add("warm up", user_id="u", infer=False)
        before = embedder.calls
        results = await engine.add_many(items)
        assert embedder.calls == before + 1
        assert [r["results"][0]["memory"] for r in results] == [i["messages"] for i in items]
        found = await engine.search("locker code 1004", user_id="u1", top_k=1)
        assert found["results"][0]["memory"] == "note 4: the locker code is 1004"
    finally:
        await engine.close()


def test_sync_add_many_refuses_a_bad_item_before_writing(tmp_path: Path) -> None:
    with Memory(store=SQLiteStore(path=tmp_path / "c.db"), embedder=FakeEmbedder()) as m:
        good = {"messages": "I live in Porto", "user_id": "u", "infer": False}
        with pytest.raises(ValidationError) as info:
            m.add_many([good, {"messages": "no scope", "infer": False}])
        assert "user_id" in str(info.value) or "scope" in str(info.value).lower()
        with pytest.raises(ValidationError) as unknown:
            m.add_many([{**good, "colour": "red"}])
        assert unknown.value.field == "items[0]"
        assert m.get_all(user_id="u")["results"] == []
        assert m.add_many([good])[0]["results"][0]["event"] == "ADD"

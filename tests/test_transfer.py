"""Engram's export format: round trip, idempotent re-import, conflicts, SQLite -> PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engram import AsyncMemory
from engram.errors import ValidationError
from engram.interfaces import Store
from engram.stores.sqlite import SQLiteStore
from engram.testing import FakeEmbedder
from engram.transfer import export_to, import_file
from engram.transfer.format import dumps, loads
from tests.transfer_helpers import everything, filled_source


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[AsyncMemory]:
    engine = await filled_source(tmp_path / "source.db")
    yield engine
    await engine.close()


async def export_file(engine: AsyncMemory, path: Path, **kw: Any) -> list[str]:
    with path.open("w", encoding="utf-8") as out:
        await export_to(engine, out.write, **kw)
    return path.read_text(encoding="utf-8").splitlines()


async def test_export_has_a_header_and_every_memory_with_history_and_sources(
    source: AsyncMemory, tmp_path: Path
) -> None:
    lines = await export_file(source, tmp_path / "out.jsonl")
    head = json.loads(lines[0])
    assert head["format"] == "engram-export" and head["version"] == 1
    assert head["embedder"] == {"name": "fake:64", "dim": 64}
    records = [json.loads(line) for line in lines[1:]]
    texts = [r["memory"] for r in records]
    # oldest first; superseded and expired memories included, deleted ones not
    assert texts[:3] == ["Alice lives in Berlin", "Alice works as a nurse", "Alice lives in Madrid"]
    assert "temporary note" not in texts and "an old expired fact" in texts
    berlin = records[0]
    assert berlin["superseded_by"] == records[2]["id"] and berlin["valid_until"]
    assert [h["event"] for h in berlin["history"]] == ["ADD", "SUPERSEDE"]
    assert berlin["sources"][0]["content"] == "I live in Berlin and work as a nurse."
    window = next(r for r in records if r["memory"] == "I prefer window seats")
    assert window["metadata"] == {"topic": "travel", "priority": 2, "tags": ["seat", "plane"]}
    assert (window["agent_id"], window["run_id"], window["expiration_date"]) == (
        "travel-bot",
        "trip-1",
        "2031-01-01",
    )
    tea = next(r for r in records if r["memory"] == "Bob drinks green tea")
    assert [h["event"] for h in tea["history"]] == ["ADD", "UPDATE"] and tea["updated_at"]
    assert "vector" not in tea


async def test_export_import_export_is_byte_identical_and_rerun_skips(
    source: AsyncMemory, tmp_path: Path
) -> None:
    first = await export_file(source, tmp_path / "a.jsonl", with_vectors=True)
    target = AsyncMemory(store=SQLiteStore(path=tmp_path / "target.db"), embedder=FakeEmbedder())
    try:
        report = await import_file(target, tmp_path / "a.jsonl")
        assert report.as_dict() == {"imported": len(first) - 1, "skipped": 0, "conflicts": []}
        second = await export_file(target, tmp_path / "b.jsonl", with_vectors=True)
        assert second[1:] == first[1:]
        assert await everything(target) == await everything(source)
        again = await import_file(target, tmp_path / "a.jsonl")
        assert again.as_dict() == {"imported": 0, "skipped": len(first) - 1, "conflicts": []}
        hits = await target.search("where does alice live", user_id="alice")
        assert hits["results"][0]["memory"] == "Alice lives in Madrid"
    finally:
        await target.close()


async def test_a_conflicting_id_is_reported_and_never_overwritten(
    source: AsyncMemory, tmp_path: Path
) -> None:
    lines = await export_file(source, tmp_path / "a.jsonl")
    changed = json.loads(lines[1])
    changed["memory"] = "Alice lives in Paris"
    (tmp_path / "b.jsonl").write_text(lines[0] + "\n" + json.dumps(changed) + "\n", encoding="utf-8")
    report = await import_file(source, tmp_path / "b.jsonl")
    assert report.imported == 0 and report.skipped == 0
    assert report.conflicts == [{"id": changed["id"], "reason": "a different memory with this id is stored"}]
    stored = await source.get(changed["id"])
    assert stored is not None and stored["memory"] == "Alice lives in Berlin"


async def test_a_bad_line_is_named_and_nothing_is_written(source: AsyncMemory, tmp_path: Path) -> None:
    lines = await export_file(source, tmp_path / "a.jsonl")
    broken = json.loads(lines[2])
    broken["created_at"] = "yesterday"
    (tmp_path / "b.jsonl").write_text("\n".join([lines[0], lines[1], json.dumps(broken)]) + "\n")
    target = AsyncMemory(store=SQLiteStore(path=tmp_path / "t.db"), embedder=FakeEmbedder())
    try:
        with pytest.raises(ValidationError, match=r"line 3\.created_at"):
            await import_file(target, tmp_path / "b.jsonl")
        assert (await target.get_all(user_id="alice"))["total"] == 0
        (tmp_path / "c.jsonl").write_text('{"format": "something-else"}\n')
        with pytest.raises(ValidationError, match="not an Engram export"):
            await import_file(target, tmp_path / "c.jsonl")
    finally:
        await target.close()


async def test_import_into_another_namespace_and_filtered_export(source: AsyncMemory, tmp_path: Path) -> None:
    lines = await export_file(source, tmp_path / "bob.jsonl", filters={"user_id": "bob"})
    assert {json.loads(line)["user_id"] for line in lines[1:]} == {"bob"}
    target = AsyncMemory(store=SQLiteStore(path=tmp_path / "t.db"), embedder=FakeEmbedder())
    try:
        project = target.namespace_view("project-2")
        assert (await import_file(project, tmp_path / "bob.jsonl")).imported == len(lines) - 1
        assert (await project.get_all(user_id="bob"))["total"] == 2
        assert (await target.get_all(user_id="bob"))["total"] == 0
    finally:
        await target.close()


@pytest.mark.postgres
async def test_move_from_sqlite_to_postgres(
    source: AsyncMemory, tmp_path: Path, postgres_store_factory: Callable[[], Store]
) -> None:
    lines = await export_file(source, tmp_path / "move.jsonl", with_vectors=True)
    target = AsyncMemory(store=postgres_store_factory(), embedder=FakeEmbedder())
    try:
        report = await import_file(target, tmp_path / "move.jsonl")
        assert report.conflicts == [] and report.imported > 0
        assert await everything(target) == await everything(source)
        back = await export_file(target, tmp_path / "back.jsonl", with_vectors=True)
        assert back[1:] == lines[1:]
        again = await import_file(target, tmp_path / "move.jsonl")
        assert again.imported == 0 and again.skipped == report.imported
        hits = await target.search("I prefer window seats", user_id="alice")
        assert "I prefer window seats" in [h["memory"] for h in hits["results"][:2]]
    finally:
        await target.close()


async def test_vectors_of_another_embedder_are_recomputed(source: AsyncMemory, tmp_path: Path) -> None:
    await export_file(source, tmp_path / "v.jsonl", with_vectors=True)
    same, other = FakeEmbedder(), FakeEmbedder(dim=32)
    for embedder, embedded in ((same, 0), (other, 1)):
        target = AsyncMemory(store=SQLiteStore(path=tmp_path / f"{embedder.info.dim}.db"), embedder=embedder)
        try:
            assert (await import_file(target, tmp_path / "v.jsonl")).conflicts == []
            assert embedder.calls == embedded  # the export's own vectors are used when they fit
            hits = await target.search("Bob drinks green tea", user_id="bob")
            assert hits["results"][0]["memory"] == "Bob drinks green tea"
        finally:
            await target.close()


async def test_a_fact_already_stored_under_another_id_is_a_conflict(
    source: AsyncMemory, tmp_path: Path
) -> None:
    lines = await export_file(source, tmp_path / "a.jsonl")
    tea = next(json.loads(line) for line in lines[1:] if "green tea" in line)
    target = AsyncMemory(store=SQLiteStore(path=tmp_path / "t.db"), embedder=FakeEmbedder())
    try:
        mine = (await target.add("Bob drinks green tea", user_id="bob", infer=False))["results"][0]["id"]
        report = await import_file(target, tmp_path / "a.jsonl")
        assert [c["id"] for c in report.conflicts] == [tea["id"]]
        assert report.imported == len(lines) - 2
        assert await target.get(tea["id"]) is None and await target.get(mine) is not None
    finally:
        await target.close()


def test_vectors_are_read_apart_exactly_as_the_json_decoder_reads_them() -> None:
    vector = np.random.default_rng(3).normal(size=384).astype(np.float32)
    line = dumps({"id": "a", "metadata": {"vector": [1, 2]}, "vector": [float(x) for x in vector]})
    fast = loads(line + "\n")
    assert fast["metadata"] == {"vector": [1, 2]}
    assert np.asarray(fast["vector"], dtype=np.float32).tobytes() == vector.tobytes()
    assert loads(line, vector=False) == {"id": "a", "metadata": {"vector": [1, 2]}}
    for other in ('{"vector": [1, 2]}', '{"id": "a", "vector": [1, "x"]}', '{"id":"a","vector":[]}',
                  '{"id":"a","vector":[1e3,-2]}', '{"id":"a","vector":[1,2]} '):  # fmt: skip
        read = loads(other)
        assert {**read, "vector": list(read["vector"])} == json.loads(other)


async def test_a_malformed_number_in_a_vector_is_named_and_nothing_is_written(
    source: AsyncMemory, tmp_path: Path
) -> None:
    lines = await export_file(source, tmp_path / "a.jsonl", with_vectors=True)
    broken = lines[2].replace(',"vector":[', ',"vector":[1.2.3,', 1)
    (tmp_path / "b.jsonl").write_text("\n".join([lines[0], lines[1], broken]) + "\n", encoding="utf-8")
    target = AsyncMemory(store=SQLiteStore(path=tmp_path / "t.db"), embedder=FakeEmbedder())
    try:
        with pytest.raises(ValidationError, match=r"line 3\.vector holds a malformed number"):
            await import_file(target, tmp_path / "b.jsonl")
        assert (await target.get_all(user_id="alice"))["total"] == 0
    finally:
        await target.close()

"""``engram import`` into PostgreSQL writes with COPY (engram.stores.postgres.restore), on a real
PostgreSQL: the same stored memories, the same report and the same export as the one-by-one path,
into an empty table (indexes built after the load) and into one that holds rows."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from engram import AsyncMemory
from engram.interfaces import Store
from engram.stores.postgres import PostgresStore
from engram.testing import FakeEmbedder
from engram.transfer import Incoming, export_to, import_file, import_memories, importer
from engram.transfer.format import parse_memory
from tests.transfer_helpers import everything, filled_source

pytestmark = pytest.mark.postgres
RESTORE_LOG = "engram.stores.postgres.restore"


class OneByOneStore(PostgresStore):
    """The PostgreSQL store restoring one memory per transaction (the interface's default)."""

    restore_many = Store.restore_many  # type: ignore[assignment]


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[AsyncMemory]:
    engine = await filled_source(tmp_path / "source.db")
    yield engine
    await engine.close()


@pytest.fixture
def targets(pg_url: str, pg_schema: str) -> Iterator[Callable[[str, type[PostgresStore]], AsyncMemory]]:
    """Engines on fresh schemas of the test's PostgreSQL (``pg_schema`` + suffix), dropped after."""
    made: list[str] = []

    def make(suffix: str, kind: type[PostgresStore] = PostgresStore) -> AsyncMemory:
        made.append(pg_schema + suffix)
        return AsyncMemory(store=kind(url=pg_url, schema_name=pg_schema + suffix), embedder=FakeEmbedder())

    yield make
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for schema in made:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def export_file(engine: AsyncMemory, path: Path) -> list[str]:
    with path.open("w", encoding="utf-8") as out:
        await export_to(engine, out.write, with_vectors=True)
    return path.read_text(encoding="utf-8").splitlines()


def index_oids(url: str, schema: str) -> dict[str, int]:
    """Each index of the memories table by name, with its oid (a rebuilt index has a new one)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.oid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE n.nspname = %s AND t.relname = 'memories'",
            (schema,),
        ).fetchall()
    return {str(name): int(oid) for name, oid in rows}


def copy_log(caplog: pytest.LogCaptureFixture) -> list[tuple[int, int, bool]]:
    """(written with COPY, written one by one, into an empty table) of each import logged since the
    last call."""
    found = []
    for r in caplog.records:
        if r.name == RESTORE_LOG:
            m = re.match(
                r"import: (\d+) memories written with COPY and (\d+) one by one \((.*?)\)", r.getMessage()
            )
            assert m, r.getMessage()
            found.append((int(m[1]), int(m[2]), m[3].startswith("into an empty table")))
    caplog.clear()
    return found


def tricky(lines: list[str]) -> list[str]:
    """The export's lines (header first) and every case the rule tells apart: a line again (the
    same memory), its id again with another text, a fact of a later line under another id (so that
    line conflicts), and, last, a new memory reusing the second line's history ids."""
    records = [json.loads(line) for line in lines[1:]]
    tea = next(r for r in records if r["memory"] == "Bob drinks green tea")
    changed = {**records[0], "memory": "Alice lives in Paris"}
    twin = {**tea, "id": "twin-of-tea", "history": [{**tea["history"][0], "id": "h-twin"}]}
    reused = {**tea, "id": "reuses-a-history-id", "memory": "Bob drinks coffee", "hash": "h-coffee",
              "history": records[1]["history"]}  # fmt: skip
    return [lines[0], *lines[1:3], lines[1], json.dumps(changed), json.dumps(twin), *lines[3:],
            json.dumps(reused)]  # fmt: skip


async def prefill(target: AsyncMemory, lines: list[str], tmp_path: Path) -> None:
    """Rows the import will meet: the first line's memory as is, the second's id in another
    namespace, the tea fact under another id, and the expired memory's id taken by a deleted one."""
    records = [json.loads(line) for line in lines[1:]]
    tea = next(r for r in records if r["memory"] == "Bob drinks green tea")
    expired = next(r for r in records if r["memory"] == "an old expired fact")
    mine = {**tea, "id": "mine", "history": [{**h, "id": f"mine-{i}"} for i, h in enumerate(tea["history"])]}
    here, there = tmp_path / "here.jsonl", tmp_path / "there.jsonl"
    here.write_text("\n".join([lines[0], lines[1], json.dumps(mine), json.dumps(expired)]) + "\n")
    there.write_text("\n".join([lines[0], lines[2]]) + "\n")
    assert (await import_file(target, here)).imported == 3
    assert (await import_file(target.namespace_view("other"), there)).imported == 1
    await target.delete(expired["id"])


async def export_all(target: AsyncMemory, path: Path) -> list[str]:
    """Every memory of both namespaces as exported (headers left out)."""
    return (await export_file(target, path))[1:] + (await export_file(target.namespace_view("other"), path))[
        1:
    ]


@pytest.mark.parametrize("filled", [False, True], ids=["empty", "filled"])
async def test_the_report_and_the_data_are_the_one_by_one_paths(
    source: AsyncMemory,
    targets: Callable[..., AsyncMemory],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    filled: bool,
) -> None:
    lines = await export_file(source, tmp_path / "a.jsonl")
    file = tmp_path / "tricky.jsonl"
    file.write_text("\n".join(tricky(lines)) + "\n", encoding="utf-8")
    caplog.set_level(logging.INFO, logger=RESTORE_LOG)
    results = []
    for suffix, kind in (("_copy", PostgresStore), ("_one", OneByOneStore)):
        target = targets(suffix, kind)
        try:
            if filled:
                await prefill(target, lines, tmp_path)
            copy_log(caplog)
            report = (await import_file(target, file)).as_dict()
            kept = await target.get(json.loads(lines[1])["id"])
            assert kept is not None and kept["memory"] == "Alice lives in Berlin"  # not overwritten
            results.append((report, await export_all(target, tmp_path / "out.jsonl"), copy_log(caplog)))
        finally:
            await target.close()
    (report, exported, log), (one_report, one_exported, one_log) = results
    assert report == one_report and exported == one_exported
    assert one_log == []  # the one-by-one store never reached the COPY module
    reasons = {c["id"]: c["reason"] for c in report["conflicts"]}
    tea = next(json.loads(line)["id"] for line in lines if "Bob drinks green tea" in line)
    first, second = (json.loads(line)["id"] for line in lines[1:3])
    expired = next(json.loads(line)["id"] for line in lines if "an old expired fact" in line)
    assert reasons[first] == "a different memory with this id is stored"
    assert "memories_current_hash" in reasons[tea]  # PostgreSQL's own message, as one by one
    if filled:
        taken = "the id is taken (by a deleted memory or in another namespace)"
        assert reasons[second] == reasons[expired] == taken
        assert "memories_current_hash" in reasons["twin-of-tea"]
        assert report["skipped"] == 2  # the first line, twice
        assert log[0][:2] == (report["imported"], len(lines) + 3 - report["imported"]) and not log[0][2]
    else:
        assert "history_id_key" in reasons["reuses-a-history-id"]
        assert set(reasons) == {first, tea, "reuses-a-history-id"} and report["skipped"] == 1
        assert log == [(len(lines) - 1, 4, True)]  # 12 memories: 8 copied, 4 through the rule


async def test_import_into_an_empty_table_copies_and_builds_the_indexes_after(
    source: AsyncMemory,
    targets: Callable[..., AsyncMemory],
    tmp_path: Path,
    pg_url: str,
    pg_schema: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines = await export_file(source, tmp_path / "a.jsonl")
    target = targets("")
    caplog.set_level(logging.INFO, logger=RESTORE_LOG)
    try:
        await target.open()
        before = index_oids(pg_url, pg_schema)
        seen: list[tuple[int, int | None]] = []
        report = await import_file(target, tmp_path / "a.jsonl", progress=lambda d, t: seen.append((d, t)))
        n = len(lines) - 1
        assert report.as_dict() == {"imported": n, "skipped": 0, "conflicts": []}
        assert seen == [(n, n)]
        assert copy_log(caplog) == [(n, 0, True)]
        after = index_oids(pg_url, pg_schema)
        assert set(after) == set(before)  # every index is back, HNSW included
        rebuilt = {name for name in after if after[name] != before[name]}
        kept = {"memories_pkey", "memories_seq_key", "memories_current_hash"}
        assert rebuilt == set(before) - kept
        assert (await export_file(target, tmp_path / "b.jsonl"))[1:] == lines[1:]
        assert await everything(target) == await everything(source)
        travel = await target.get_all(user_id="alice", filters={"priority": {"gte": 2}})
        assert {m["memory"] for m in travel["results"]} == {"I prefer window seats", "Noted: window seats."}
        again = await import_file(target, tmp_path / "a.jsonl")
        assert again.as_dict() == {"imported": 0, "skipped": n, "conflicts": []}
        assert copy_log(caplog) == [(0, n, False)]
        assert index_oids(pg_url, pg_schema) == after  # a table with rows keeps its indexes
        hits = await target.search("I prefer window seats", user_id="alice")
        assert hits["results"][0]["memory"] == "I prefer window seats"
    finally:
        await target.close()


async def test_a_failed_import_into_an_empty_table_leaves_it_empty_and_indexed(
    source: AsyncMemory,
    targets: Callable[..., AsyncMemory],
    tmp_path: Path,
    pg_url: str,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = await export_file(source, tmp_path / "a.jsonl")

    def items() -> Iterator[Incoming]:
        for number, line in enumerate(lines[1:], start=2):
            yield Incoming(parse_memory(json.loads(line), number)[0], has_vector=True)
        raise RuntimeError("the source broke")

    monkeypatch.setattr(importer, "BATCH", 3)  # two batches are copied before the failure
    target = targets("")
    try:
        await target.open()
        before = index_oids(pg_url, pg_schema)
        with pytest.raises(RuntimeError, match="the source broke"):
            await import_memories(target, items())
        assert index_oids(pg_url, pg_schema) == before  # the dropped indexes came back with the rollback
        assert (await target.get_all(user_id="alice", include_superseded=True))["total"] == 0
        report = await import_file(target, tmp_path / "a.jsonl")
        assert report.imported == len(lines) - 1
    finally:
        await target.close()

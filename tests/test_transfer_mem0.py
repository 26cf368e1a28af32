"""Import from mem0 open source: a store written by the real mem0ai 2.2.1 (local Qdrant + SQLite history),
read back by Engram without mem0 installed."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import mem0_env
from engram import AsyncMemory
from engram.embedders.minilm import MiniLMEmbedder
from engram.stores.sqlite import SQLiteStore
from engram.transfer import import_memories
from engram.transfer.mem0_oss import Mem0Source, read_mem0

pytest.importorskip("qdrant_client")
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def mem0_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A mem0 home (qdrant/ and history.db) and what mem0's own ``get`` shows of its memories."""
    python = mem0_env.ensure_env()
    home = tmp_path_factory.mktemp("mem0-home")
    proc = subprocess.run(
        [str(python), str(HERE / "mem0_writer.py"), str(home)],
        env={**os.environ, **mem0_env.runner_env()},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield home, json.loads(proc.stdout.strip().splitlines()[-1])


def source_of(home: Path) -> Mem0Source:
    return Mem0Source.from_mem0_config(
        {
            "vector_store": {
                "provider": "qdrant",
                "config": {"collection_name": "bench", "path": str(home / "qdrant")},
            },
            "history_db_path": str(home / "history.db"),
        }
    )


async def test_memories_written_by_mem0_arrive_with_id_text_scope_and_metadata(
    mem0_store: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    home, shown = mem0_store
    engine = AsyncMemory(store=SQLiteStore(path=tmp_path / "engram.db"), embedder=MiniLMEmbedder())
    try:
        report = await import_memories(engine, read_mem0(source_of(home)))
        assert report.as_dict() == {"imported": 3, "skipped": 0, "conflicts": []}
        for item in shown["memories"]:
            got = await engine.get(item["id"])
            assert got is not None, item
            assert got["memory"] == item["memory"]
            for key in ("user_id", "agent_id", "run_id"):
                assert got[key] == item.get(key), key
            assert got["metadata"] == (item["metadata"] or {})
            assert got["created_at"] == item["created_at"]
            assert got["role"] == item.get("role") and got["actor_id"] == item.get("actor_id")
        for deleted in shown["deleted"]:
            assert await engine.get(deleted) is None
        tea = next(i for i in shown["memories"] if i["memory"].startswith("Bob"))
        history = await engine.history(tea["id"])
        assert [(h["event"], h["old_memory"], h["new_memory"]) for h in history] == [
            ("ADD", None, "Bob drinks tea every morning"),
            ("UPDATE", "Bob drinks tea every morning", "Bob drinks green tea every morning"),
        ]
        assert history[0]["details"]["mem0_hash"]
        plan = next(i for i in shown["memories"] if i.get("run_id"))
        assert (await engine.get(plan["id"]))["expiration_date"] == "2031-05-31"  # type: ignore[index]
        found = await engine.search("which seat does alice like on planes?", user_id="alice")
        assert found["results"][0]["memory"] == "I prefer window seats on long flights"
        found = await engine.search("morning drink", user_id="bob", agent_id="barista")
        assert found["results"][0]["id"] == tea["id"]
        again = await import_memories(engine, read_mem0(source_of(home)))
        assert again.as_dict() == {"imported": 0, "skipped": 3, "conflicts": []}
    finally:
        await engine.close()


def test_engram_import_mem0_command(
    mem0_store: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from engram.cli import main

    home, shown = mem0_store
    monkeypatch.setenv("ENGRAM_HOME", str(tmp_path / "engram-home"))
    config = tmp_path / "mem0_config.json"
    qdrant = {"provider": "qdrant", "config": {"collection_name": "bench", "path": str(home / "qdrant")}}
    config.write_text(json.dumps({"vector_store": qdrant, "history_db_path": str(home / "history.db")}))
    flags = [
        "--qdrant-path",
        str(home / "qdrant"),
        "--history-db",
        str(home / "history.db"),
        "--collection",
        "bench",
    ]
    for args, expected in (
        (["import", "mem0", *flags, "--json"], {"imported": 3, "skipped": 0, "conflicts": []}),
        (
            ["import", "mem0", "--config", str(config), "--json"],
            {"imported": 0, "skipped": 3, "conflicts": []},
        ),
    ):
        with pytest.raises(SystemExit) as done:
            main(args)
        assert done.value.code in (0, None)
        assert json.loads(capsys.readouterr().out) == expected
    with pytest.raises(SystemExit):
        main(["search", "seat on long flights", "--user", "alice", "--json"])
    top = json.loads(capsys.readouterr().out)["results"][0]
    assert top["id"] == shown["memories"][0]["id"]


@pytest.mark.postgres
async def test_pgvector_store_laid_out_as_mem0_writes_it(pg_url: str, tmp_path: Path) -> None:
    """mem0's pgvector store is one table named after the collection: (id uuid, vector, payload jsonb)."""
    import uuid

    import psycopg
    from psycopg.types.json import Jsonb

    from engram.testing import FakeEmbedder

    table = f"mem0_{uuid.uuid4().hex[:8]}"
    memory_id = str(uuid.uuid4())
    payload = {"data": "Dana runs marathons", "hash": "0f1e", "created_at": "2026-01-02T03:04:05+00:00",
               "updated_at": "2026-01-02T03:04:05+00:00", "user_id": "dana", "run_id": "r1", "role": "user",
               "text_lemmatized": "dana run marathon", "sport": "running", "km": 42}  # fmt: skip
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(f"CREATE TABLE {table} (id UUID PRIMARY KEY, vector vector(3), payload JSONB)")
        conn.execute(f"INSERT INTO {table} VALUES (%s, '[1,0,0]', %s)", (memory_id, Jsonb(payload)))
    source = Mem0Source(provider="pgvector", config={"connection_string": pg_url, "collection_name": table})
    engine = AsyncMemory(store=SQLiteStore(path=tmp_path / "e.db"), embedder=FakeEmbedder())
    try:
        assert (await import_memories(engine, read_mem0(source))).imported == 1
        got = await engine.get(memory_id)
        assert got is not None
        assert (got["memory"], got["user_id"], got["run_id"]) == ("Dana runs marathons", "dana", "r1")
        assert got["metadata"] == {"sport": "running", "km": 42}
        assert got["created_at"] == "2026-01-02T03:04:05+00:00" and got["updated_at"] is None
    finally:
        await engine.close()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {table}")


async def test_chroma_store_laid_out_as_mem0_writes_it(tmp_path: Path) -> None:
    """mem0's Chroma store: one collection, the payload as each record's metadata."""
    chromadb = pytest.importorskip("chromadb")
    from chromadb.config import Settings

    from engram.testing import FakeEmbedder

    client = chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=Settings(anonymized_telemetry=False)
    )
    collection = client.get_or_create_collection("mem0")
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(300)]  # more than one page
    collection.add(
        ids=ids,
        embeddings=[[1.0, 0.0, float(i)] for i in range(300)],
        metadatas=[{"data": f"fact {i}", "hash": "x", "created_at": "2026-01-02T03:04:05+00:00",
                    "user_id": "u", "agent_id": "a", "role": "user", "tag": i % 3} for i in range(300)],
    )  # fmt: skip
    del collection, client
    source = Mem0Source(provider="chroma", config={"path": str(tmp_path / "chroma")})
    engine = AsyncMemory(store=SQLiteStore(path=tmp_path / "e.db"), embedder=FakeEmbedder())
    try:
        assert (await import_memories(engine, read_mem0(source))).imported == 300
        got = await engine.get(ids[7])
        assert got is not None
        assert (got["memory"], got["user_id"], got["agent_id"], got["metadata"]) == (
            "fact 7",
            "u",
            "a",
            {"tag": 1},
        )
    finally:
        await engine.close()

"""One migration runner, one migrations table: databases made before it still open, keep their data,
and have their old migration records converted (SQLite files made by the previous release, and a
PostgreSQL schema laid out by the previous release's SQL)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from engram import AsyncMemory
from engram.embedders.fake import FakeEmbedder
from engram.service import hash_api_key
from engram.stores.sqlite import SQLiteStore
from engram.stores.sqlite.schema import MIGRATIONS as SQLITE_STORE_MIGRATIONS
from engram.stores.sqlite.service import MIGRATIONS as SQLITE_STATE_MIGRATIONS
from engram.stores.sqlite.service import SQLiteServiceState

LEGACY = Path(__file__).parent / "data" / "legacy"  # made by the release before the one layout


def _records(path: Path) -> list[tuple[str, int, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT component, version, name FROM schema_migrations ORDER BY 1, 2").fetchall()


async def test_an_old_sqlite_store_opens_with_its_memories(tmp_path: Path) -> None:
    shutil.copy(LEGACY / "engram.db", tmp_path / "engram.db")
    memory = AsyncMemory(store=SQLiteStore(path=tmp_path / "engram.db"), embedder=FakeEmbedder())
    found = await memory.search("green tea", user_id="alice")
    assert [r["memory"] for r in found["results"]] == ["Alice likes green tea"]
    added = await memory.add("Alice likes oolong", user_id="alice", infer=False)
    assert added["results"][0]["event"] == "ADD"
    await memory.close()
    assert _records(tmp_path / "engram.db") == [("store", m.version, m.name) for m in SQLITE_STORE_MIGRATIONS]
    reopened = AsyncMemory(store=SQLiteStore(path=tmp_path / "engram.db"), embedder=FakeEmbedder())
    assert len((await reopened.get_all(user_id="alice"))["results"]) == 2
    await reopened.close()


async def test_an_old_sqlite_server_state_opens_with_its_keys_and_jobs(tmp_path: Path) -> None:
    shutil.copy(LEGACY / "server.db", tmp_path / "server.db")
    state = SQLiteServiceState(path=tmp_path / "server.db")
    await state.open()
    ctx = await state.lookup_key(hash_api_key((LEGACY / "key.txt").read_text()))
    assert ctx is not None and ctx.project.name == "p" and ctx.key.name == "legacy"
    again = await state.enqueue(ctx.project.id, "ADD", {"n": 1}, idempotency_key="k1", request_hash="h1")
    assert not again.created and again.job.payload == {"n": 1}
    await state.close()
    names = [(c, v, n) for c, v, n in _records(tmp_path / "server.db")]
    assert names == [("state", m.version, m.name) for m in SQLITE_STATE_MIGRATIONS]


async def test_a_new_migration_is_one_entry(tmp_path: Path) -> None:
    from engram.stores.sql.migrations import Migration, script
    from engram.stores.sqlite.schema import migrate

    last = SQLITE_STATE_MIGRATIONS[-1].version
    notes = Migration(last + 1, "notes", script("CREATE TABLE notes (id TEXT);\n"))
    steps = [*SQLITE_STATE_MIGRATIONS, notes]
    conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    assert migrate(conn, "state", SQLITE_STATE_MIGRATIONS) == last
    assert migrate(conn, "state", steps) == last + 1
    assert migrate(conn, "state", steps) == last + 1  # applied once
    assert conn.execute("SELECT count(*) FROM notes").fetchone() == (0,)
    conn.close()
    assert _records(tmp_path / "s.db")[-1] == ("state", last + 1, "notes")


@pytest.mark.postgres
async def test_an_old_postgres_schema_opens_with_its_data(pg_url: str, pg_schema: str) -> None:
    import psycopg

    from engram.stores.postgres import PostgresStore
    from engram.stores.postgres.schema import MIGRATIONS
    from engram.stores.postgres.service import MIGRATIONS as STATE_MIGRATIONS
    from engram.stores.postgres.service import PostgresServiceState

    s = pg_schema
    with psycopg.connect(pg_url, autocommit=True) as conn, conn.transaction():
        # What the previous release did: its tables, and its two migrations tables.
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(f"CREATE SCHEMA {s}")
        conn.execute(
            f"CREATE TABLE {s}.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            f"CREATE TABLE {s}.service_migrations (version integer PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, name, statements in MIGRATIONS:
            for statement in statements(s):
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {s}.schema_migrations (version, name) VALUES (%s, %s)", (version, name)
            )
        for statement in STATE_MIGRATIONS[0].statements(s):
            conn.execute(statement)
        conn.execute(f"INSERT INTO {s}.service_migrations (version) VALUES (1)")
        conn.execute(f"INSERT INTO {s}.orgs VALUES ('org_1', 'o', 0)")
    state = PostgresServiceState(url=pg_url, schema_name=s)
    await state.open()
    assert (await state.ensure_org("o")).id == "org_1"
    await state.close()
    memory = AsyncMemory(store=PostgresStore(url=pg_url, schema_name=s), embedder=FakeEmbedder())
    await memory.add("Alice likes green tea", user_id="alice", infer=False)
    assert len((await memory.get_all(user_id="alice"))["results"]) == 1
    await memory.close()
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(f"SELECT component, version FROM {s}.schema_migrations ORDER BY 1, 2").fetchall()
        old = conn.execute("SELECT to_regclass(%s)", (f"{s}.service_migrations",)).fetchone()
    assert rows == [("state", m.version) for m in STATE_MIGRATIONS] + [
        ("store", m.version) for m in MIGRATIONS
    ]
    assert old == (None,)

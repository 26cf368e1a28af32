"""Numbered migrations of the embedded store; the applied ones are recorded in ``schema_migrations``."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from engram.types import utcnow

Migration = tuple[int, str, Callable[[sqlite3.Connection], None]]


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run statements one by one (``executescript`` would commit the open transaction)."""
    for statement in script.split(";\n"):
        if statement.strip():
            conn.execute(statement)


def _m001_initial(conn: sqlite3.Connection) -> None:
    _run_script(
        conn,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta (key, value) VALUES ('generation', '0');

        CREATE TABLE memories (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            namespace TEXT NOT NULL,
            user_id TEXT, agent_id TEXT, app_id TEXT, run_id TEXT,
            scope_key TEXT NOT NULL,
            text TEXT NOT NULL,
            hash TEXT NOT NULL,
            actor_id TEXT,
            role TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT,
            observed_at TEXT NOT NULL,
            expires_at TEXT,
            superseded_by TEXT,
            valid_until TEXT,
            deleted_at TEXT,
            scope_tokens TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE vectors (seq INTEGER PRIMARY KEY, embedding BLOB NOT NULL);
        CREATE INDEX memories_by_user ON memories (namespace, user_id) WHERE deleted_at IS NULL;
        CREATE INDEX memories_by_agent ON memories (namespace, agent_id) WHERE deleted_at IS NULL;
        CREATE INDEX memories_by_app ON memories (namespace, app_id) WHERE deleted_at IS NULL;
        CREATE INDEX memories_by_run ON memories (namespace, run_id) WHERE deleted_at IS NULL;
        CREATE INDEX memories_by_observed ON memories (namespace, observed_at);
        CREATE UNIQUE INDEX memories_current_hash ON memories (namespace, scope_key, hash)
            WHERE deleted_at IS NULL AND superseded_by IS NULL;

        CREATE VIRTUAL TABLE memories_fts USING fts5 (
            text, scope_tokens, content='memories', content_rowid='seq',
            tokenize='porter unicode61 remove_diacritics 2'
        );

        CREATE TABLE messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            namespace TEXT NOT NULL,
            user_id TEXT, agent_id TEXT, app_id TEXT, run_id TEXT,
            scope_key TEXT NOT NULL,
            role TEXT NOT NULL,
            name TEXT,
            content TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            observed_at TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX messages_by_scope ON messages (namespace, scope_key, seq);
        CREATE INDEX messages_by_content ON messages (namespace, scope_key, content_hash);

        CREATE TABLE memory_sources (
            memory_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            PRIMARY KEY (memory_id, message_id)
        ) WITHOUT ROWID;

        CREATE TABLE history (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            namespace TEXT NOT NULL,
            memory_id TEXT NOT NULL,
            event TEXT NOT NULL,
            old_memory TEXT,
            new_memory TEXT,
            created_at TEXT NOT NULL,
            actor_id TEXT,
            role TEXT,
            details TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX history_by_memory ON history (memory_id, seq);
        """,
    )


def _m002_entities_profiles(conn: sqlite3.Connection) -> None:
    from engram.stores.sqlite.derived import MIGRATION_002

    _run_script(conn, MIGRATION_002)


MIGRATIONS: list[Migration] = [
    (1, "initial", _m001_initial),
    (2, "entity links and profiles", _m002_entities_profiles),
]


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations inside one write transaction; returns the schema version."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, name, apply in MIGRATIONS:
            if version in applied:
                continue
            apply(conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, utcnow().isoformat()),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return max(v for v, _, _ in MIGRATIONS)

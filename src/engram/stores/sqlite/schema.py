"""Numbered migrations of the embedded store (run by :func:`engram.stores.sql.migrations.migrate`).

To add one, append ``Migration(<next number>, "<what it does>", script(<SQL statements>))`` to
:data:`MIGRATIONS`; never edit an applied one.
"""

from __future__ import annotations

import sqlite3

from engram.stores.sql import derived, migrations
from engram.stores.sql.dialect import run_inline
from engram.stores.sql.migrations import Migration, script
from engram.stores.sqlite.connection import immediate
from engram.stores.sqlite.db import SQLiteDb

_INITIAL = """
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
"""

# The change feed (engram.stores.sql.changes): new rows get tx 0, older ones stay out of it.
_CHANGE_FEED = """
ALTER TABLE history ADD COLUMN tx INTEGER DEFAULT 0;
UPDATE history SET tx = NULL;
CREATE INDEX history_changes ON history (tx, seq) WHERE tx IS NOT NULL;
"""

MIGRATIONS: list[Migration] = [
    Migration(1, "initial", script(_INITIAL)),
    Migration(2, "entity links and profiles", derived.tables),
    Migration(3, "change feed", script(_CHANGE_FEED)),
]


def migrate(conn: sqlite3.Connection, component: str = "store", steps: list[Migration] = MIGRATIONS) -> int:
    """Apply pending migrations inside one write transaction; returns the schema version.

    An up-to-date database is only read (no write lock), so opening it never waits for a writer.
    """
    db = SQLiteDb(conn)
    if not run_inline(migrations.pending(db, component, steps)):
        return migrations.latest(steps)
    with immediate(conn):
        return run_inline(migrations.migrate(db, component, steps))

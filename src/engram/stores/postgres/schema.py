"""Numbered migrations of the PostgreSQL store, run by :func:`engram.stores.sql.migrations.migrate`.

To add one, append ``Migration(<next number>, "<what it does>", <function of the schema name returning
its statements>)`` to :data:`MIGRATIONS`; never edit an applied one.

Every process runs :func:`migrate` at open; a transaction-scoped advisory lock makes concurrent
processes apply each migration exactly once (the others wait, then find it recorded). DDL is
transactional in PostgreSQL, so a failed migration leaves nothing half-applied.
"""

from __future__ import annotations

import re
from typing import Any

from engram.errors import ConfigError
from engram.stores.postgres.db import PostgresDb
from engram.stores.sql import derived, migrations
from engram.stores.sql.migrations import Migration

# One key for every Engram schema in the database: CREATE EXTENSION is database-wide.
MIGRATION_LOCK_KEY = 0x656E6772616D  # "engram"
SCHEMA_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


HNSW_INDEX = "memories_embedding_hnsw"  # the store looks the index up by this name when it opens


def hnsw_index_sql(schema: str) -> str:
    """The vector index for scopes too large to scan (inner product, as the searches order by)."""
    return (
        f"CREATE INDEX IF NOT EXISTS {HNSW_INDEX} ON {schema}.memories USING hnsw (embedding vector_ip_ops)"
    )


def check_schema_name(name: str) -> str:
    """Schema names are interpolated into SQL, so only plain lower-case identifiers are accepted."""
    if not SCHEMA_NAME_RE.match(name):
        raise ConfigError(
            f"store.config.schema_name {name!r} must be a lower-case identifier (letters, digits, '_')",
            details={"field": "schema_name"},
        )
    return name


def _m001_initial(s: str) -> list[str]:
    return [
        f"""CREATE TABLE {s}.meta (key text PRIMARY KEY, value text NOT NULL)""",
        f"""CREATE TABLE {s}.memories (
            seq bigserial UNIQUE,
            id text PRIMARY KEY,
            namespace text NOT NULL,
            user_id text, agent_id text, app_id text, run_id text,
            scope_key text NOT NULL,
            text text NOT NULL,
            hash text NOT NULL,
            actor_id text,
            role text,
            metadata jsonb NOT NULL DEFAULT '{{}}',  -- for filters (jsonb normalises numbers)
            metadata_text text NOT NULL DEFAULT '{{}}',  -- exactly as given, for reads
            created_at timestamptz NOT NULL,
            updated_at timestamptz,
            observed_at timestamptz NOT NULL,
            expires_at date,
            superseded_by text,
            valid_until timestamptz,
            deleted_at timestamptz,
            tsv tsvector NOT NULL,  -- the text's FTS5 terms with positions (see tokens.py)
            doc_len integer NOT NULL,  -- its number of tokens, for BM25
            embedding vector NOT NULL
        )""",
        *(
            f"""CREATE INDEX memories_by_{col} ON {s}.memories (namespace, {col}, seq)
                INCLUDE (doc_len) WHERE deleted_at IS NULL"""
            for col in ("user_id", "agent_id", "app_id", "run_id")
        ),
        f"""CREATE INDEX memories_by_namespace ON {s}.memories (namespace, seq)
            INCLUDE (doc_len) WHERE deleted_at IS NULL""",
        f"""CREATE INDEX memories_by_observed ON {s}.memories (namespace, observed_at DESC, seq DESC)
            WHERE deleted_at IS NULL""",
        # The constraint that makes concurrent identical adds store once.
        f"""CREATE UNIQUE INDEX memories_current_hash ON {s}.memories (namespace, scope_key, hash)
            WHERE deleted_at IS NULL AND superseded_by IS NULL""",
        f"""CREATE INDEX memories_tsv ON {s}.memories USING gin (tsv)""",
        f"""CREATE TABLE {s}.messages (
            seq bigserial UNIQUE,
            id text PRIMARY KEY,
            namespace text NOT NULL,
            user_id text, agent_id text, app_id text, run_id text,
            scope_key text NOT NULL,
            role text NOT NULL,
            name text,
            content text NOT NULL,
            content_hash text NOT NULL,
            observed_at timestamptz NOT NULL,
            created_at timestamptz NOT NULL
        )""",
        f"""CREATE INDEX messages_by_scope ON {s}.messages (namespace, scope_key, seq)""",
        f"""CREATE INDEX messages_by_content ON {s}.messages (namespace, scope_key, content_hash)""",
        f"""CREATE TABLE {s}.memory_sources (
            memory_id text NOT NULL,
            message_id text NOT NULL,
            PRIMARY KEY (memory_id, message_id)
        )""",
        f"""CREATE TABLE {s}.history (
            seq bigserial PRIMARY KEY,
            id text NOT NULL UNIQUE,
            namespace text NOT NULL,
            memory_id text NOT NULL,
            event text NOT NULL,
            old_memory text,
            new_memory text,
            created_at timestamptz NOT NULL,
            actor_id text,
            role text,
            details jsonb NOT NULL DEFAULT '{{}}'
        )""",
        f"""CREATE INDEX history_by_memory ON {s}.history (memory_id, seq)""",
    ]


def _fold_tables() -> tuple[str, str, list[tuple[str, str]]]:
    """What Python's ``str.casefold`` does beyond ``lower()``: 1:1 maps and multi-character ones."""
    src, dst, multi = [], [], []
    for cp in range(0x110000):
        c = chr(cp)
        if 0xD800 <= cp <= 0xDFFF or c != c.lower():
            continue  # applied after lower(): only lower-case output characters need a map
        f = c.casefold()
        if f == c:
            continue
        if len(f) == 1:
            src.append(c)
            dst.append(f)
        else:
            multi.append((c, f))
    return "".join(src), "".join(dst), multi


def _m002_fold(s: str) -> list[str]:
    src, dst, multi = _fold_tables()
    body = f"translate(lower($1), '{src}', '{dst}')"
    for c, f in multi:
        body = f"replace({body}, '{c}', '{f}')"
    return [
        f"""CREATE FUNCTION {s}.fold(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
            AS $fold$ SELECT {body} $fold$""",
    ]


def _m003_sources_by_message(s: str) -> list[str]:
    return [f"CREATE INDEX memory_sources_by_message ON {s}.memory_sources (message_id)"]


def _m004_vectors_inline(s: str) -> list[str]:
    # A memory row is about 2 kB (a 384-d vector alone is 1.5 kB): past the default 2 kB target,
    # PostgreSQL would try to compress the vector and then move it to the TOAST table, so every
    # exact scan and vectors_for read a second relation. Rows up to a page stay whole (new rows;
    # VACUUM FULL rewrites old ones); wider vectors are still TOASTed.
    return [f"ALTER TABLE {s}.memories SET (toast_tuple_target = 8160)"]


def _m006_change_feed(s: str) -> list[str]:
    # The change feed (engram.stores.sql.changes): a row's tx is its writing transaction's id, so the
    # feed can wait for transactions that commit out of order; older rows keep NULL (not in the feed).
    return [
        f"ALTER TABLE {s}.history ADD COLUMN tx bigint",
        f"ALTER TABLE {s}.history ALTER COLUMN tx SET DEFAULT pg_current_xact_id()::text::bigint",
        f"CREATE INDEX history_changes ON {s}.history (tx, seq) WHERE tx IS NOT NULL",
    ]


MIGRATIONS: list[Migration] = [
    Migration(1, "initial", _m001_initial),
    Migration(2, "unicode case folding for icontains", _m002_fold),
    Migration(3, "index source links by message", _m003_sources_by_message),
    Migration(4, "keep memory rows with their vectors in the table", _m004_vectors_inline),
    Migration(5, "entity links and profiles", derived.tables),
    Migration(6, "change feed", _m006_change_feed),
]


async def migrate(
    conn: Any, schema: str, component: str = "store", steps: list[Migration] = MIGRATIONS
) -> int:
    """Apply pending migrations in one transaction under the advisory lock; returns the version.

    An up-to-date schema is only read (no lock), so opening it never waits for a migrating process.
    """
    s = check_schema_name(schema)
    if not await migrations.pending(PostgresDb(conn, s), component, steps):
        return migrations.latest(steps)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        if component == "store":
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        return await migrations.migrate(PostgresDb(conn, s), component, steps)

"""Row conversion and SQL fragments shared by the SQLite store's methods."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import numpy as np

from engram.filters import FilterNode
from engram.stores.sql.dialect import scope_clauses, visibility_clauses
from engram.stores.sql.rows import RowReader
from engram.stores.sqlite.sql_filters import compile_filter
from engram.types import SCOPE_FIELDS, Candidate, Scope, Visibility

CHUNK = 500  # stay well under SQLite's bound-parameter limit


def scope_tokens(namespace: str, scope: Scope) -> str:
    """Opaque FTS tokens, one per given scope id (and specific to the namespace), so that keyword search
    narrows to the scope inside the full-text index instead of filtering a global match afterwards.

    There is no token for the namespace alone: it would be in every row, and intersecting with such a
    long posting list is what makes FTS slow at a million rows."""
    return " ".join(
        "s" + name[0] + hashlib.blake2b(f"{namespace}\x1f{value}".encode(), digest_size=8).hexdigest()
        for name, value in scope.given().items()
    )


def fts_delete(conn: sqlite3.Connection, seq: int) -> str:
    """Remove one memory from the FTS index (external content needs the old values); returns its tokens."""
    text, tokens = conn.execute("SELECT text, scope_tokens FROM memories WHERE seq = ?", (seq,)).fetchone()
    conn.execute(
        "INSERT INTO memories_fts (memories_fts, rowid, text, scope_tokens) VALUES ('delete', ?, ?, ?)",
        (seq, text, tokens),
    )
    return str(tokens)


def chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def scope_sql(scope: Scope) -> tuple[str, list[Any]]:
    given = scope.given()
    if not given:
        return "1", []
    return " AND ".join(f"m.{k} = ?" for k in given if k in SCOPE_FIELDS), list(given.values())


def where_clause(
    namespace: str, scope: Scope, filters: FilterNode | None, visibility: Visibility
) -> tuple[str, list[Any]]:
    """Scope, visibility and filters as one SQL condition over alias ``m``."""
    clauses, params = scope_clauses(namespace, scope, "?")
    clauses.extend(visibility_clauses(visibility, "?", params, iso=True))
    if filters is not None:
        sql, filter_params = compile_filter(filters)
        clauses.append(sql)
        params.extend(filter_params)
    return " AND ".join(clauses), params


def top_candidates(
    ids: list[str], scores: np.ndarray, mask: np.ndarray | None, limit: int
) -> list[Candidate]:
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    n = min(limit, len(ids))
    if n <= 0:
        return []
    top = np.argpartition(-scores, n - 1)[:n] if n < len(ids) else np.arange(len(ids))
    top = top[np.argsort(-scores[top], kind="stable")]
    return [Candidate(ids[i], float(scores[i])) for i in top if np.isfinite(scores[i])]


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


ROWS = RowReader(datetime.fromisoformat, _day, json.loads)
memory_from_row = ROWS.memory
message_from_row = ROWS.message

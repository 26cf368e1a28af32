"""Candidate generation of the SQLite store: exact vector scoring within a scope, FTS5 BM25, and the
scope's timeline neighbours, all from the scope's cached vectors where possible."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np

from engram.ranking import informative_terms, term_count_cap
from engram.stores.sql.dialect import Neighbours, Query
from engram.stores.sqlite.reads import SQLiteReads, generation
from engram.stores.sqlite.rows import scope_sql, scope_tokens, top_candidates, where_clause
from engram.stores.sqlite.vector_cache import ScopeVectors, cache_key
from engram.types import Candidate, Scope, Vector

_NEVER = np.iinfo(np.int64).max


def _epoch(value: str) -> float:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _scope_match(namespace: str, scope: Scope) -> str:
    """The FTS5 clause that keeps matches inside the scope (its opaque scope tokens)."""
    return " AND ".join(f'scope_tokens : "{token}"' for token in scope_tokens(namespace, scope).split())


def _phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


class SQLiteCandidates(SQLiteReads):
    async def vector_candidates(self, q: Query, query_vector: Vector) -> list[Candidate]:
        if q.filters is not None:
            where, params = where_clause(q.namespace, q.scope, q.filters, q.visibility)
            rows = self.conn.execute(
                f"SELECT m.id, v.embedding FROM memories m JOIN vectors v ON v.seq = m.seq WHERE {where}",
                params,
            ).fetchall()
            if not rows:
                return []
            ids = [r[0] for r in rows]
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
            return top_candidates(ids, matrix @ query_vector, None, q.limit)
        entry = self._scope_vectors(q.namespace, q.scope)
        if not entry.ids:
            return []
        mask = np.ones(len(entry.ids), dtype=bool)
        if not q.visibility.include_superseded:
            mask &= ~entry.superseded
        if not q.visibility.show_expired:
            mask &= entry.expires >= q.visibility.effective_today().toordinal()
        return top_candidates(entry.ids, entry.matrix @ query_vector, mask, q.limit)

    def _scope_vectors(self, namespace: str, scope: Scope) -> ScopeVectors:
        key = cache_key(namespace, scope)
        entry = self.cache.get(key, generation(self.conn))
        if entry is not None:
            return entry
        where, params = scope_sql(scope)
        self.conn.execute("BEGIN")
        try:
            current = generation(self.conn)
            rows = self.conn.execute(
                "SELECT m.id, v.embedding, m.superseded_by IS NOT NULL, m.expires_at, m.observed_at "
                "FROM memories m JOIN vectors v ON v.seq = m.seq "
                f"WHERE m.namespace = ? AND m.deleted_at IS NULL AND {where} ORDER BY m.seq",
                [namespace, *params],
            ).fetchall()
        finally:
            self.conn.execute("COMMIT")
        entry = ScopeVectors(
            generation=current,
            ids=[r[0] for r in rows],
            matrix=np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            .reshape(len(rows), self.dim)
            .copy(),
            superseded=np.fromiter((bool(r[2]) for r in rows), dtype=bool, count=len(rows)),
            expires=np.fromiter(
                (date.fromisoformat(r[3]).toordinal() if r[3] else _NEVER for r in rows),
                dtype=np.int64,
                count=len(rows),
            ),
            observed=np.fromiter((_epoch(r[4]) for r in rows), dtype=np.float64, count=len(rows)),
        )
        self.cache.put(key, entry)
        return entry

    async def keyword_candidates(self, q: Query, terms: list[str]) -> list[Candidate]:
        scope_match = _scope_match(q.namespace, q.scope)
        if scope_match:  # (an empty scope is the whole namespace: the SQL join narrows it)
            terms = self._informative(q, terms, scope_match)
        words = " OR ".join(_phrase(t) for t in terms)
        match = f"({words}) AND {scope_match}" if scope_match else f"({words})"
        where, params = where_clause(q.namespace, q.scope, q.filters, q.visibility)
        rows = self.conn.execute(
            "SELECT m.id, bm25(memories_fts, 1.0, 0.0) AS rank FROM memories_fts "
            "JOIN memories m ON m.seq = memories_fts.rowid "
            f"WHERE memories_fts MATCH ? AND {where} ORDER BY rank LIMIT ?",
            [match, *params, q.limit],
        ).fetchall()
        return [Candidate(r[0], -float(r[1])) for r in rows]

    def _informative(self, q: Query, terms: list[str], scope_match: str) -> list[str]:
        """Count each term in the scope (no further than just past the cap) for the ranking policy."""
        size = self._scope_vectors(q.namespace, q.scope).size
        cap = term_count_cap(len(terms), size)
        if cap is None:
            return terms
        counts = {
            term: self.conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM memories_fts WHERE memories_fts MATCH ? LIMIT ?)",
                (f"{_phrase(term)} AND {scope_match}", cap + 1),
            ).fetchone()[0]
            for term in terms
        }
        return informative_terms(terms, size, counts)

    async def neighbours(self, namespace: str, scope: Scope, memory_ids: list[str]) -> Neighbours:
        entry = self._scope_vectors(namespace, scope)
        n = len(entry.ids)
        out: Neighbours = {}
        for mid in memory_ids:
            row = entry.row_of(mid)
            if row is None:
                continue
            before = (entry.ids[row - 1], float(entry.observed[row - 1])) if row > 0 else None
            after = (entry.ids[row + 1], float(entry.observed[row + 1])) if row + 1 < n else None
            out[mid] = (float(entry.observed[row]), before, after)
        return out

"""Candidate generation of the SQLite store: exact vector scoring within a scope, and FTS5 BM25."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import numpy as np

from engram.filters import FilterNode
from engram.interfaces import HybridCandidates, cosines_of, keyword_only
from engram.keywords import query_terms
from engram.stores.sqlite.rows import chunks, scope_sql, scope_tokens, top_candidates, where_clause
from engram.stores.sqlite.vector_cache import ScopeVectors, VectorCache, cache_key
from engram.types import Candidate, MemoryContext, Scope, Vector, Visibility

T = TypeVar("T")
_NEVER = np.iinfo(np.int64).max
# A query term found in more than this share of the scope's memories carries no topic there (the
# speakers' names in a two-person conversation, for example): it is dropped from the keyword query.
# FTS5's IDF is global, so without this a name that is rare globally but everywhere in the scope
# dominates BM25.
MAX_TERM_SHARE = 0.2
_MIN_SCOPE_FOR_DF = 20


def _epoch(value: str) -> float:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _scope_match(namespace: str, scope: Scope) -> str:
    """The FTS5 clause that keeps matches inside the scope (its opaque scope tokens)."""
    return " AND ".join(f'scope_tokens : "{token}"' for token in scope_tokens(namespace, scope).split())


class CandidateSearch:
    """Mixed into :class:`SQLiteStore`; relies on its connection, runner and vector cache."""

    _cache: VectorCache
    _dim: int

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    async def _run(self, fn: Callable[..., T], *args: Any, inline: bool = False) -> T:
        raise NotImplementedError

    def _check_dim(self, vector: Vector, field: str) -> None:
        raise NotImplementedError

    async def vectors_for(self, namespace: str, memory_ids: Sequence[str]) -> dict[str, Vector]:
        if not memory_ids:
            return {}
        return await self._run(self._vectors_for_sync, namespace, list(memory_ids))

    def _vectors_for_sync(self, namespace: str, memory_ids: list[str]) -> dict[str, Vector]:
        out = self._cache.lookup(namespace, memory_ids, self._generation(self._conn()))
        missing = [mid for mid in memory_ids if mid not in out]
        for chunk in chunks(missing):
            marks = ",".join("?" * len(chunk))
            for memory_id, blob in self._conn().execute(
                "SELECT m.id, v.embedding FROM memories m JOIN vectors v ON v.seq = m.seq "
                f"WHERE +m.namespace = ? AND m.id IN ({marks})",
                [namespace, *chunk],
            ):
                out[memory_id] = np.frombuffer(blob, dtype=np.float32)
        return out

    @staticmethod
    def _generation(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    # -- candidates ------------------------------------------------------------------------------
    async def vector_candidates(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        query_vector: Vector,
        limit: int,
    ) -> list[Candidate]:
        self._check_dim(query_vector, "query_vector")
        query_vector = np.ascontiguousarray(query_vector, dtype=np.float32)
        return await self._run(self._vector_sync, namespace, scope, filters, visibility, query_vector, limit)

    def _vector_sync(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        query_vector: Vector,
        limit: int,
    ) -> list[Candidate]:
        if filters is not None:
            where, params = where_clause(namespace, scope, filters, visibility)
            rows = (
                self._conn()
                .execute(
                    f"SELECT m.id, v.embedding FROM memories m JOIN vectors v ON v.seq = m.seq WHERE {where}",
                    params,
                )
                .fetchall()
            )
            if not rows:
                return []
            ids = [r[0] for r in rows]
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
            return top_candidates(ids, matrix @ query_vector, None, limit)
        entry = self._scope_vectors(namespace, scope)
        if not entry.ids:
            return []
        mask = np.ones(len(entry.ids), dtype=bool)
        if not visibility.include_superseded:
            mask &= ~entry.superseded
        if not visibility.show_expired:
            mask &= entry.expires >= visibility.effective_today().toordinal()
        return top_candidates(entry.ids, entry.matrix @ query_vector, mask, limit)

    def _scope_vectors(self, namespace: str, scope: Scope) -> ScopeVectors:
        key = cache_key(namespace, scope)
        conn = self._conn()
        entry = self._cache.get(key, self._generation(conn))
        if entry is not None:
            return entry
        where, params = scope_sql(scope)
        conn.execute("BEGIN")
        try:
            generation = self._generation(conn)
            rows = conn.execute(
                "SELECT m.id, v.embedding, m.superseded_by IS NOT NULL, m.expires_at, m.observed_at "
                "FROM memories m JOIN vectors v ON v.seq = m.seq "
                f"WHERE m.namespace = ? AND m.deleted_at IS NULL AND {where} ORDER BY m.seq",
                [namespace, *params],
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        matrix = (
            np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self._dim).copy()
            if rows
            else np.zeros((0, self._dim), dtype=np.float32)
        )
        entry = ScopeVectors(
            generation=generation,
            ids=[r[0] for r in rows],
            matrix=matrix,
            superseded=np.fromiter((bool(r[2]) for r in rows), dtype=bool, count=len(rows)),
            expires=np.fromiter(
                (date.fromisoformat(r[3]).toordinal() if r[3] else _NEVER for r in rows),
                dtype=np.int64,
                count=len(rows),
            ),
            observed=np.fromiter((_epoch(r[4]) for r in rows), dtype=np.float64, count=len(rows)),
        )
        self._cache.put(key, entry)
        return entry

    async def keyword_candidates(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        query_text: str,
        limit: int,
    ) -> list[Candidate]:
        terms = query_terms(query_text)
        if not terms:
            return []
        return await self._run(self._keyword_sync_terms, namespace, scope, filters, visibility, terms, limit)

    def _keyword_sync_terms(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        terms: list[str],
        limit: int,
    ) -> list[Candidate]:
        scope_match = _scope_match(namespace, scope)
        if scope_match:  # (an empty scope is the whole namespace: the SQL join narrows it)
            terms = self._drop_common_terms(namespace, scope, terms, scope_match)
        words = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        match = f"({words}) AND {scope_match}" if scope_match else f"({words})"
        return self._keyword_sync(namespace, scope, filters, visibility, match, limit)

    def _drop_common_terms(
        self, namespace: str, scope: Scope, terms: list[str], scope_match: str
    ) -> list[str]:
        """Terms present in at most MAX_TERM_SHARE of the scope (all of them if none is)."""
        if len(terms) < 2:
            return terms
        size = self._scope_vectors(namespace, scope).size
        if size < _MIN_SCOPE_FOR_DF:
            return terms
        cap = int(size * MAX_TERM_SHARE)
        conn = self._conn()
        kept = []
        for term in terms:
            quoted = '"' + term.replace('"', '""') + '"'
            (count,) = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM memories_fts WHERE memories_fts MATCH ? LIMIT ?)",
                (f"{quoted} AND {scope_match}", cap + 1),
            ).fetchone()
            if count <= cap:
                kept.append(term)
        return kept or terms

    async def memory_context(
        self, namespace: str, scope: Scope, memory_ids: Sequence[str], session_gap_s: float
    ) -> dict[str, MemoryContext]:
        if not memory_ids:
            return {}
        # answered from the scope's cached vectors (warm after the candidate search): no thread hand-off
        return await self._run(
            self._context_sync, namespace, scope, list(memory_ids), session_gap_s, inline=True
        )

    def _context_sync(
        self, namespace: str, scope: Scope, memory_ids: list[str], session_gap_s: float
    ) -> dict[str, MemoryContext]:
        entry = self._scope_vectors(namespace, scope)
        n = len(entry.ids)
        out: dict[str, MemoryContext] = {}
        for mid in memory_ids:
            row = entry.row_of(mid)
            if row is None:
                continue
            ts = float(entry.observed[row])
            prev_id = next_id = None
            if row > 0 and abs(ts - entry.observed[row - 1]) <= session_gap_s:
                prev_id = entry.ids[row - 1]
            if row + 1 < n and abs(entry.observed[row + 1] - ts) <= session_gap_s:
                next_id = entry.ids[row + 1]
            out[mid] = MemoryContext(ts, prev_id, next_id)
        return out

    async def hybrid_candidates(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        query_vector: Vector | None,
        query_text: str | None,
        limit: int,
    ) -> HybridCandidates:
        """Both signals in one trip to the worker thread (fewer hand-offs per search)."""
        if query_vector is not None:
            self._check_dim(query_vector, "query_vector")
            query_vector = np.ascontiguousarray(query_vector, dtype=np.float32)
        terms = query_terms(query_text) if query_text is not None else []
        return await self._run(
            self._hybrid_sync, namespace, scope, filters, visibility, query_vector, terms, limit
        )

    def _hybrid_sync(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        query_vector: Vector | None,
        terms: list[str],
        limit: int,
    ) -> HybridCandidates:
        vector = (
            self._vector_sync(namespace, scope, filters, visibility, query_vector, limit)
            if query_vector is not None
            else []
        )
        keyword = (
            self._keyword_sync_terms(namespace, scope, filters, visibility, terms, limit) if terms else []
        )
        missing = keyword_only(vector, keyword)
        vectors = self._vectors_for_sync(namespace, missing) if missing and query_vector is not None else {}
        return HybridCandidates(vector, keyword, cosines_of(vectors, query_vector))

    def _keyword_sync(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        match: str,
        limit: int,
    ) -> list[Candidate]:
        where, params = where_clause(namespace, scope, filters, visibility)
        rows = (
            self._conn()
            .execute(
                "SELECT m.id, bm25(memories_fts, 1.0, 0.0) AS rank FROM memories_fts "
                "JOIN memories m ON m.seq = memories_fts.rowid "
                f"WHERE memories_fts MATCH ? AND {where} ORDER BY rank LIMIT ?",
                [match, *params, limit],
            )
            .fetchall()
        )
        return [Candidate(r[0], -float(r[1])) for r in rows]

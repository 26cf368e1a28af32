"""The candidate generators of the PostgreSQL store: vector, keyword (BM25) and scope context."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from engram.filters import FilterNode
from engram.keywords import query_terms
from engram.stores.postgres import search, tokens
from engram.stores.postgres.connection import PostgresConnection
from engram.types import Candidate, MemoryContext, Scope, Vector, Visibility


class CandidateSearch(PostgresConnection):
    """Mixed into :class:`~engram.stores.postgres.PostgresStore`; SQL in :mod:`.search`."""

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
        if limit <= 0:
            return []
        where, params = search.full_where(namespace, scope, filters, visibility, self._s)
        q = np.asarray(query_vector, dtype=np.float32)
        s = self._s
        bound = self.settings.exact_search_max_rows
        async with self._read_conn(namespace) as conn:
            if not self._has_hnsw:
                cur = await conn.execute(search.exact_vector_sql(s, where), [q, *params, limit])
                return [Candidate(str(r[0]), float(r[1])) for r in await cur.fetchall()]
            # One statement tells the scope's size and, when it is small enough, scores every row.
            sized = search.sized_exact_vector_sql(s, where)
            cur = await conn.execute(sized, [*params, bound + 1, q, *params, bound, limit])
            rows = await cur.fetchall()
            if int(rows[0][0]) <= bound:
                self._note_scope_size(namespace, scope, float(rows[0][0]))
                return [Candidate(str(r[1]), float(r[2])) for r in rows if r[1] is not None]
            hits = await self._hnsw_candidates(conn, where, params, q, limit)
        return [Candidate(str(r[0]), float(r[1])) for r in hits]

    async def _hnsw_candidates(
        self, conn: Any, where: str, params: list[Any], q: Vector, limit: int
    ) -> list[Any]:
        ef = max(self.settings.hnsw_ef_search, min(limit, 1000))
        async with conn.pipeline(), conn.transaction():  # the settings travel with the query
            await conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
            await conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
            cur = await conn.execute(search.hnsw_vector_sql(self._s, where), [q, *params, q, limit])
            return list(await cur.fetchall())

    async def keyword_candidates(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        query_text: str,
        limit: int,
    ) -> list[Candidate]:
        lexemes = tokens.query_lexemes(query_terms(query_text))
        if not lexemes or limit <= 0:
            return []
        if self._small_scope(namespace, scope):
            sql, params = search.bm25_sql(self._s, namespace, scope, filters, visibility, lexemes, limit)
            async with self._read_conn(namespace) as conn:
                cur = await conn.execute(sql, params)
                return [Candidate(str(r[0]), float(r[1])) for r in await cur.fetchall()]
        async with self._read_conn(namespace) as conn:
            # No shared snapshot needed: BM25 clamps N to each term's document frequency.
            n_docs, avgdl, lexemes = await self._stats_and_terms(conn, namespace, scope, lexemes)
            self._note_scope_size(namespace, scope, n_docs)
            if n_docs == 0:
                return []
            sql, params = search.bm25_sql(
                self._s, namespace, scope, filters, visibility, lexemes, limit, (n_docs, avgdl)
            )
            cur = await conn.execute(sql, params)
            rows = await cur.fetchall()
        return [Candidate(str(r[0]), float(r[1])) for r in rows]

    def _note_scope_size(self, namespace: str, scope: Scope, rows: float) -> None:
        """Remember whether the scope is small (see :meth:`_small_scope`)."""
        if len(self._scope_sizes) > 100_000:
            self._scope_sizes.clear()
        small = rows < max(self.settings.stats_cache_min_rows, search.MIN_SCOPE_FOR_DF)
        self._scope_sizes[(namespace, scope.as_tuple())] = (small, time.monotonic())

    def _small_scope(self, namespace: str, scope: Scope) -> bool:
        """Whether the scope was smaller than ``stats_cache_min_rows`` when last seen (within
        ``stats_cache_seconds``): its keyword search then runs in one statement from the scope's
        rows. Only the plan depends on this: both plans give the same results."""
        seen = self._scope_sizes.get((namespace, scope.as_tuple()))
        return seen is not None and seen[0] and time.monotonic() - seen[1] < self.settings.stats_cache_seconds

    async def _stats_and_terms(
        self, conn: Any, namespace: str, scope: Scope, lexemes: list[str]
    ) -> tuple[float, float, list[str]]:
        """The scope's (N, average length) and the query terms to keep: those in at most
        MAX_TERM_SHARE of the scope (all of them if none is), in one round trip. A large scope's
        statistics and term counts are reused for ``stats_cache_seconds``."""
        key = (namespace, scope.as_tuple())
        now = time.monotonic()
        ttl = self.settings.stats_cache_seconds
        cached = self._stats_cache.get(key)
        stats = (cached[0], cached[1]) if cached is not None and now - cached[2] < ttl else None
        counted = lexemes if len(lexemes) >= 2 else []
        counts: dict[str, int] = {}
        if stats is not None:
            for lexeme in counted:
                hit = self._term_cache.get((*key, lexeme))
                if hit is not None and now - hit[1] < ttl:
                    counts[lexeme] = hit[0]
        todo = [lexeme for lexeme in counted if lexeme not in counts]
        sql, params = search.stats_and_term_counts_sql(self._s, namespace, scope, stats)
        literals = [tokens.tsquery_literal([lexeme]) for lexeme in todo]
        cur = await conn.execute(sql, [*params, literals])
        n_docs, avgdl, fresh = await cur.fetchone()
        n_docs, avgdl = float(n_docs), float(avgdl)
        counts.update(zip(todo, (int(c) for c in fresh), strict=True))
        if n_docs >= max(self.settings.stats_cache_min_rows, 1):
            if len(self._stats_cache) > 10_000 or len(self._term_cache) > 100_000:
                self._stats_cache.clear()
                self._term_cache.clear()
            if stats is None:
                self._stats_cache[key] = (n_docs, avgdl, now)
            for lexeme in todo:
                self._term_cache[(*key, lexeme)] = (counts[lexeme], now)
        if not counted or n_docs < search.MIN_SCOPE_FOR_DF:
            return n_docs, avgdl, lexemes
        cap = int(n_docs * search.MAX_TERM_SHARE)
        kept = [lexeme for lexeme in counted if counts[lexeme] <= cap]
        return n_docs, avgdl, kept or lexemes

    async def memory_context(
        self, namespace: str, scope: Scope, memory_ids: Sequence[str], session_gap_s: float
    ) -> dict[str, MemoryContext]:
        if not memory_ids:
            return {}
        sql, params = search.context_sql(self._s, namespace, scope)
        async with self._read_conn(namespace) as conn:
            cur = await conn.execute(sql, [*params, list(memory_ids)])
            rows = await cur.fetchall()
        out: dict[str, MemoryContext] = {}
        for mid, ts, prev_id, prev_ts, next_id, next_ts in rows:
            out[str(mid)] = MemoryContext(
                float(ts),
                str(prev_id) if prev_id is not None and abs(ts - prev_ts) <= session_gap_s else None,
                str(next_id) if next_id is not None and abs(next_ts - ts) <= session_gap_s else None,
            )
        return out

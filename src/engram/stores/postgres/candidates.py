"""Candidate generation of the PostgreSQL store: vector (pgvector), keyword (BM25 over tsvector) and
the scope's timeline neighbours.

Vector: exact inner product inside the scope (``ORDER BY score DESC`` cannot use an index, so the
scope's btree index narrows and every row is scored); scopes larger than ``exact_search_max_rows`` go
through the HNSW index with pgvector's iterative scan so filters still yield ``limit`` rows.

Keyword: texts are tokenized like the embedded store (:mod:`.tokens`); the GIN index finds the rows
holding any query term and they are scored with BM25 (k1=1.2, b=0.75, idf floored at 1e-6: the
formula of SQLite FTS5's ``bm25()``), with N, the average length and each term's document frequency
taken over the scope (not deleted; the embedded store takes them over the whole file).
A scope last seen smaller than ``stats_cache_min_rows`` is searched in one statement that starts
from its rows (:func:`bm25_scope_first_sql`, same results).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from engram.ranking import MAX_TERM_SHARE, MIN_SCOPE_FOR_DF, informative_terms
from engram.stores.postgres import tokens
from engram.stores.postgres.reads import PostgresReads, full_where
from engram.stores.postgres.sql_filters import compile_filter
from engram.stores.postgres.timeline import Found, Wrap, in_context_sql, rows_found
from engram.stores.sql.dialect import Neighbours, Query, scope_clauses, visibility_clauses
from engram.types import Candidate, Scope, Vector

K1 = 1.2
B = 0.75


def exact_vector_sql(schema: str, where: str) -> str:
    """Params: query vector, *where params, limit. Scores every row of the scope (id, score, seq)."""
    return (
        f"SELECT m.id, -(m.embedding <#> %s) AS score, m.seq FROM {schema}.memories m WHERE {where} "
        "ORDER BY score DESC, m.seq LIMIT %s"
    )


def sized_exact_vector_sql(schema: str, where: str, wrap: Wrap) -> tuple[str, list[Any]]:
    """Params: *where params, bound + 1, query vector, *where params, bound, limit, then the
    returned ones (``wrap``'s, see :meth:`PostgresCandidates._wrap`).

    Rows of (scope size counted up to bound + 1, then ``wrap``'s columns): the exact top rows when
    the scope has at most ``bound`` rows, else one row with no id (the caller then asks the index).
    """
    count = f"SELECT count(*) FROM (SELECT 1 FROM {schema}.memories m WHERE {where} LIMIT %s) t"
    inner, params = wrap(exact_vector_sql(schema, where + " AND size.count <= %s"))
    return f"size AS ({count}) SELECT size.count, c.* FROM size LEFT JOIN LATERAL ({inner}) c ON true", params


def hnsw_vector_sql(schema: str, where: str) -> str:
    """Params: query vector, *where params, query vector, limit. Ordered the way the index walks."""
    return (
        f"SELECT m.id, -(m.embedding <#> %s) AS score, m.seq FROM {schema}.memories m WHERE {where} "
        "ORDER BY m.embedding <#> %s LIMIT %s"
    )


def stats_and_term_counts_sql(
    schema: str, namespace: str, scope: Scope, known: tuple[float, float] | None
) -> tuple[str, list[Any]]:
    """Params then: tsquery texts. One row: the scope's N and average document length (or the
    ``known`` ones), and for each term the rows of the scope holding it, counted no further than
    just past MAX_TERM_SHARE of N."""
    clauses, params = scope_clauses(namespace, scope, "%s")
    where = " AND ".join(clauses)
    if known is None:
        stats = (
            "SELECT count(*)::float8 AS n, COALESCE(avg(m.doc_len), 0)::float8 AS avgdl "
            f"FROM {schema}.memories m WHERE {where}"
        )
        stats_params = params
    else:
        stats, stats_params = "SELECT %s::float8 AS n, %s::float8 AS avgdl", [*known]
    sql = (
        f"WITH st AS ({stats}) SELECT st.n, st.avgdl, ARRAY(SELECT (SELECT count(*) FROM (SELECT 1 FROM "
        f"{schema}.memories m WHERE {where} AND m.tsv @@ t.q::tsquery "
        f"LIMIT floor(st.n * {MAX_TERM_SHARE})::bigint + 1) c) "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS t(q, i) ORDER BY t.i) FROM st"
    )
    return sql, [*stats_params, *params]


def _bm25_sum(n: str, df: str, avgdl: str) -> str:
    """FTS5's BM25 summed over a row's ``tf`` rows (columns ``tf``, ``doc_len``)."""
    return (
        f"sum(GREATEST(ln((GREATEST({n}, {df}) - {df} + 0.5) / ({df} + 0.5)), 1e-6) "
        f"* (tf.tf * {K1 + 1}) / (tf.tf + {K1} * ({1 - B} + {B} * tf.doc_len / {avgdl})))"
    )


def _ok_sql(schema: str, q: Query) -> tuple[str, list[Any]]:
    """Visibility and filters as one condition (the rows failing it still count for N and df)."""
    params: list[Any] = []
    clauses = visibility_clauses(q.visibility, "%s::date", params, iso=False)
    if q.filters is not None:
        filter_sql, filter_params = compile_filter(q.filters, fold=f"{schema}.fold")
        clauses.append(filter_sql)
        params.extend(filter_params)
    return " AND ".join(clauses) or "true", params


def bm25_sql(
    schema: str, q: Query, lexemes: Sequence[str], n_docs: float, avgdl: float
) -> tuple[str, list[Any]]:
    """Top ``limit`` rows of the scope by BM25 over ``lexemes`` (each one phrase, as in FTS5), the
    rows found through the GIN index (``lexemes`` already stripped of common terms)."""
    scope_where, scope_params = scope_clauses(q.namespace, q.scope, "%s")
    ok, ok_params = _ok_sql(schema, q)
    sql = f"""
WITH lex AS (SELECT t.lexeme, t.i FROM unnest(%s::text[]) WITH ORDINALITY AS t(lexeme, i)),
matched AS MATERIALIZED (
    SELECT m.id, m.seq, m.tsv, m.doc_len, ({ok}) AS ok
    FROM {schema}.memories m
    WHERE {" AND ".join(scope_where)} AND m.tsv @@ %s::tsquery
),
tf AS (
    SELECT mt.id, mt.seq, mt.doc_len, mt.ok, lex.i, cardinality(u.positions) AS tf
    FROM matched mt CROSS JOIN LATERAL unnest(mt.tsv) AS u JOIN lex ON lex.lexeme = u.lexeme
),
df AS (SELECT i, count(DISTINCT id)::float8 AS df FROM tf GROUP BY i)
SELECT tf.id, {_bm25_sum("%s::float8", "df.df", "%s::float8")} AS score, tf.seq
FROM tf JOIN df USING (i)
WHERE tf.ok
GROUP BY tf.id, tf.seq
ORDER BY score DESC, tf.seq
LIMIT %s"""
    literal = tokens.tsquery_literal(lexemes)
    return sql, [list(lexemes), *ok_params, *scope_params, literal, n_docs, max(avgdl, 1e-9), q.limit]


def bm25_scope_first_sql(schema: str, q: Query, lexemes: Sequence[str]) -> tuple[str, list[Any]]:
    """Keyword search of a small scope in one statement, starting from the scope's rows.

    Same result as :func:`stats_and_term_counts_sql`, :func:`engram.ranking.informative_terms`
    then :func:`bm25_sql`: N and the average length over the scope, terms in more than
    MAX_TERM_SHARE of it dropped (when two or more were given, the scope has MIN_SCOPE_FOR_DF rows
    and any term is rare enough), BM25 over the rest. The scope's rows are read through its btree
    index and tested for the terms one by one, instead of intersecting the table-wide GIN index
    (which, for a common word, reads every row of every scope holding it).
    """
    scope_where, scope_params = scope_clauses(q.namespace, q.scope, "%s")
    ok, ok_params = _ok_sql(schema, q)
    cap = f"floor(st.n * {MAX_TERM_SHARE})"
    sql = f"""
WITH lex AS (SELECT t.lexeme, t.i FROM unnest(%s::text[]) WITH ORDINALITY AS t(lexeme, i)),
sc AS MATERIALIZED (
    SELECT m.id, m.seq, m.tsv, m.doc_len, ({ok}) AS ok
    FROM {schema}.memories m WHERE {" AND ".join(scope_where)}
),
st AS (SELECT count(*)::float8 AS n, COALESCE(avg(sc.doc_len), 0)::float8 AS avgdl FROM sc),
tf AS MATERIALIZED (
    SELECT sc.id, sc.seq, sc.doc_len, sc.ok, lex.i, cardinality(u.positions) AS tf
    FROM sc CROSS JOIN LATERAL unnest(sc.tsv) AS u JOIN lex ON lex.lexeme = u.lexeme
    WHERE sc.tsv @@ %s::tsquery
),
df AS (SELECT lex.i, count(DISTINCT tf.id)::float8 AS df FROM lex LEFT JOIN tf USING (i) GROUP BY lex.i),
rule AS (
    SELECT %s::bool AND st.n >= {MIN_SCOPE_FOR_DF} AND bool_or(df.df <= {cap}) AS active
    FROM df CROSS JOIN st GROUP BY st.n
),
kept AS (SELECT df.i, df.df FROM df CROSS JOIN st CROSS JOIN rule WHERE NOT rule.active OR df.df <= {cap})
SELECT tf.id, {_bm25_sum("st.n", "kept.df", "GREATEST(st.avgdl, 1e-9)")} AS score, tf.seq
FROM tf JOIN kept USING (i) CROSS JOIN st
WHERE tf.ok
GROUP BY tf.id, tf.seq
ORDER BY score DESC, tf.seq
LIMIT %s"""
    params = [
        list(lexemes), *ok_params, *scope_params, tokens.tsquery_literal(lexemes), len(lexemes) >= 2,
        q.limit,
    ]  # fmt: skip
    return sql, params


class PostgresCandidates(PostgresReads):
    async def vector_candidates(self, q: Query, query_vector: Vector) -> list[Candidate]:
        return (await self.vector_found(q, query_vector, context=False)).candidates

    async def keyword_candidates(self, q: Query, terms: list[str]) -> list[Candidate]:
        return (await self.keyword_found(q, terms, None, context=False)).candidates

    def _wrap(self, q: Query, context: bool) -> Wrap:
        """How a candidate statement's SQL is wrapped: as it is, or in context (:mod:`.timeline`)."""
        if context:
            return lambda inner: in_context_sql(self.s, q.namespace, q.scope, inner)
        return lambda inner: (inner, [])

    async def _found(
        self, sql: str, params: list[Any], vector: Vector | None, context: bool, sized: bool = False
    ) -> Found:
        """Run a candidate statement (``vector``: the query's, bound as ``qv`` in context; ``sized``:
        ``sql`` starts with the ``size`` CTE of :func:`sized_exact_vector_sql`)."""
        if context:
            sql = f"WITH qv AS (SELECT %s::vector AS v){', ' if sized else ' '}{sql}"
            params = [vector, *params]
        elif sized:
            sql = f"WITH {sql}"
        rows = await (await self.conn.execute(sql, params)).fetchall()
        return rows_found(rows, context, sized)

    async def vector_found(self, q: Query, query_vector: Vector, *, context: bool) -> Found:
        """The scope's best rows by cosine: exactly when the scope is small enough, else by HNSW."""
        where, params = full_where(q, self.s)
        vector = np.asarray(query_vector, dtype=np.float32)
        wrap = self._wrap(q, context)
        rows_key = f"{where} {params!r}"
        if not self.store._has_hnsw or self.store._exact_known(rows_key):
            sql, more = wrap(exact_vector_sql(self.s, where))
            return await self._found(sql, [vector, *params, q.limit, *more], vector, context)
        # One statement tells the scope's size and, when it is small enough, scores every row.
        bound = self.store.settings.exact_search_max_rows
        sized, more = sized_exact_vector_sql(self.s, where, wrap)
        done = await self._found(
            sized, [*params, bound + 1, vector, *params, bound, q.limit, *more], vector, context, sized=True
        )
        if done.size is not None and done.size <= bound:
            self.store._note_scope_size(q.namespace, q.scope, float(done.size))
            self.store._note_exact(rows_key)
            return done
        ef = max(self.store.settings.hnsw_ef_search, min(q.limit, 1000))
        sql, more = wrap(hnsw_vector_sql(self.s, where))
        async with self.conn.pipeline(), self.conn.transaction():  # the settings travel with the query
            await self.conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
            await self.conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
            return await self._found(sql, [vector, *params, vector, q.limit, *more], vector, context)

    async def keyword_found(
        self, q: Query, terms: list[str], query_vector: Vector | None, *, context: bool
    ) -> Found:
        """BM25 over the informative ones of ``terms`` (see :meth:`keyword_candidates`)."""
        lexemes = tokens.query_lexemes(terms)
        if not lexemes:
            return Found()
        if not self.store._scope_size_seen(q.namespace, q.scope):
            await self._probe_scope_size(q.namespace, q.scope)
        if self.store._small_scope(q.namespace, q.scope):
            sql, params = bm25_scope_first_sql(self.s, q, lexemes)
        else:
            # No shared snapshot needed: BM25 clamps N to each term's document frequency.
            n_docs, avgdl, counts = await self._stats_and_counts(q.namespace, q.scope, lexemes)
            self.store._note_scope_size(q.namespace, q.scope, n_docs)
            if n_docs == 0:
                return Found()
            lexemes = informative_terms(lexemes, n_docs, counts)
            sql, params = bm25_sql(self.s, q, lexemes, n_docs, avgdl)
        sql, more = self._wrap(q, context)(sql)
        vector = np.asarray(query_vector, dtype=np.float32) if query_vector is not None else None
        return await self._found(sql, [*params, *more], vector, context)

    async def _probe_scope_size(self, namespace: str, scope: Scope) -> None:
        """Count the scope's rows up to the small-scope bound (an index-only scan of a few pages), so
        that a small scope's first search in this process starts from its rows too: the statistics
        statement would count each term through the table-wide GIN index (0.3-0.5 s at 10M rows)."""
        clauses, params = scope_clauses(namespace, scope, "%s")
        bound = max(self.store.settings.stats_cache_min_rows, MIN_SCOPE_FOR_DF)
        cur = await self.conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {self.s}.memories m WHERE {' AND '.join(clauses)} "
            "LIMIT %s) t",
            [*params, bound],
        )
        self.store._note_scope_size(namespace, scope, float((await cur.fetchone())[0]))

    async def _stats_and_counts(
        self, namespace: str, scope: Scope, lexemes: list[str]
    ) -> tuple[float, float, dict[str, int]]:
        """The scope's (N, average length) and, with two terms or more, each term's row count, in one
        round trip. A large scope's statistics and term counts are reused for ``stats_cache_seconds``."""
        store, key, now = self.store, (namespace, scope.as_tuple()), time.monotonic()
        ttl = store.settings.stats_cache_seconds
        cached = store._stats_cache.get(key)
        stats = (cached[0], cached[1]) if cached is not None and now - cached[2] < ttl else None
        counts: dict[str, int] = {}
        counted = lexemes if len(lexemes) >= 2 else []
        for lexeme in counted if stats is not None else []:
            hit = store._term_cache.get((*key, lexeme))
            if hit is not None and now - hit[1] < ttl:
                counts[lexeme] = hit[0]
        todo = [lexeme for lexeme in counted if lexeme not in counts]
        if stats is not None and not todo:  # all known: no statement
            return stats[0], stats[1], counts
        sql, params = stats_and_term_counts_sql(self.s, namespace, scope, stats)
        cur = await self.conn.execute(sql, [*params, [tokens.tsquery_literal([lexeme]) for lexeme in todo]])
        n_docs, avgdl, fresh = await cur.fetchone()
        n_docs, avgdl = float(n_docs), float(avgdl)
        counts.update(zip(todo, (int(c) for c in fresh), strict=True))
        if n_docs >= max(store.settings.stats_cache_min_rows, 1):
            if len(store._stats_cache) > 10_000 or len(store._term_cache) > 100_000:
                store._stats_cache.clear()
                store._term_cache.clear()
            if stats is None:
                store._stats_cache[key] = (n_docs, avgdl, now)
            for lexeme in todo:
                store._term_cache[(*key, lexeme)] = (counts[lexeme], now)
        return n_docs, avgdl, counts

    async def neighbours(self, namespace: str, scope: Scope, memory_ids: list[str]) -> Neighbours:
        clauses, params = scope_clauses(namespace, scope, "%s")
        inner = (
            f"SELECT m.id, 0 AS score, m.seq FROM {self.s}.memories m "
            f"WHERE {' AND '.join(clauses)} AND m.id = ANY(%s::text[])"
        )
        sql, more = in_context_sql(self.s, namespace, scope, inner)
        return (await self._found(sql, [*params, memory_ids, *more], None, context=True)).timeline

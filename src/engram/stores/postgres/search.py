"""SQL of the two candidate generators: vector (pgvector) and keyword (BM25 over tsvector).

Vector: exact inner product inside the scope (``ORDER BY score DESC`` cannot use an index, so the
scope's btree index narrows and every row is scored); scopes larger than ``exact_max_rows`` go
through the HNSW index with pgvector's iterative scan so filters still yield ``limit`` rows.

Keyword: texts are tokenized like the embedded store (:mod:`.tokens`); the GIN index finds the rows
holding any query term and they are scored with BM25 (k1=1.2, b=0.75, idf floored at 1e-6: the
formula of SQLite FTS5's ``bm25()``), with N, the average length and each term's document frequency
taken over the scope (not deleted; the embedded store takes them over the whole file).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engram.filters import FilterNode
from engram.stores.postgres.sql_filters import compile_filter
from engram.stores.postgres.tokens import tsquery_literal
from engram.types import Scope, Visibility

K1 = 1.2
B = 0.75


MAX_TERM_SHARE = 0.2  # like the embedded store: terms in more of the scope than this are dropped
MIN_SCOPE_FOR_DF = 20


def scope_where(namespace: str, scope: Scope, alias: str = "m") -> tuple[list[str], list[Any]]:
    """Namespace, not deleted, and the given scope ids (``None`` ids match anything)."""
    clauses = [f"{alias}.namespace = %s", f"{alias}.deleted_at IS NULL"]
    params: list[Any] = [namespace]
    for key, value in scope.given().items():  # keys are the four fixed scope field names
        clauses.append(f"{alias}.{key} = %s")
        params.append(value)
    return clauses, params


def stats_and_term_counts_sql(
    schema: str, namespace: str, scope: Scope, known: tuple[float, float] | None
) -> tuple[str, list[Any]]:
    """Params then: tsquery texts. One row: the scope's N and average document length (or the
    ``known`` ones), and for each term the rows of the scope holding it, counted no further than
    just past MAX_TERM_SHARE of N."""
    clauses, params = scope_where(namespace, scope)
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


def context_sql(schema: str, namespace: str, scope: Scope) -> tuple[str, list[Any]]:
    """Params then: memory ids. Each memory's observation time and its scope neighbours by seq."""
    m_clauses, m_params = scope_where(namespace, scope, "m")
    p_clauses, p_params = scope_where(namespace, scope, "p")
    n_clauses, n_params = scope_where(namespace, scope, "n")
    epoch = "extract(epoch FROM {}.observed_at)::float8"
    sql = (
        f"SELECT m.id, {epoch.format('m')}, p.id, {epoch.format('p')}, n.id, {epoch.format('n')} "
        f"FROM {schema}.memories m "
        f"LEFT JOIN LATERAL (SELECT p.id, p.observed_at FROM {schema}.memories p "
        f"WHERE {' AND '.join(p_clauses)} AND p.seq < m.seq ORDER BY p.seq DESC LIMIT 1) p ON true "
        f"LEFT JOIN LATERAL (SELECT n.id, n.observed_at FROM {schema}.memories n "
        f"WHERE {' AND '.join(n_clauses)} AND n.seq > m.seq ORDER BY n.seq LIMIT 1) n ON true "
        f"WHERE {' AND '.join(m_clauses)} AND m.id = ANY(%s::text[])"
    )
    return sql, [*p_params, *n_params, *m_params]


def full_where(
    namespace: str, scope: Scope, filters: FilterNode | None, visibility: Visibility, schema: str
) -> tuple[str, list[Any]]:
    """Scope, visibility and filters as one SQL condition over alias ``m``."""
    clauses, params = scope_where(namespace, scope)
    clauses.extend(visibility_clauses(visibility, params))
    if filters is not None:
        sql, filter_params = compile_filter(filters, fold=f"{schema}.fold")
        clauses.append(sql)
        params.extend(filter_params)
    return " AND ".join(clauses), params


def visibility_clauses(visibility: Visibility, params: list[Any]) -> list[str]:
    clauses = []
    if not visibility.include_superseded:
        clauses.append("m.superseded_by IS NULL")
    if not visibility.show_expired:
        clauses.append("(m.expires_at IS NULL OR m.expires_at >= %s::date)")
        params.append(visibility.effective_today())
    return clauses


def count_upto_sql(schema: str, where: str) -> str:
    """How many rows match, counting no further than a bound (the last parameter)."""
    return f"SELECT count(*) FROM (SELECT 1 FROM {schema}.memories m WHERE {where} LIMIT %s) t"


def exact_vector_sql(schema: str, where: str) -> str:
    """Params: query vector, *where params, limit. Scores every row of the scope."""
    return (
        f"SELECT m.id, -(m.embedding <#> %s) AS score FROM {schema}.memories m WHERE {where} "
        "ORDER BY score DESC, m.seq LIMIT %s"
    )


def sized_exact_vector_sql(schema: str, where: str) -> str:
    """Params: *where params, bound + 1, query vector, *where params, bound, limit.

    Rows of (scope size counted up to bound + 1, id, score): the exact top rows when the scope has
    at most ``bound`` rows, else one row with no id (the caller then asks the index).
    """
    return (
        f"WITH size AS ({count_upto_sql(schema, where)}) SELECT size.count, c.id, c.score FROM size "
        f"LEFT JOIN LATERAL ({exact_vector_sql(schema, where + ' AND size.count <= %s')}) c ON true"
    )


def hnsw_vector_sql(schema: str, where: str) -> str:
    """Params: query vector, *where params, query vector, limit. Ordered the way the index walks."""
    return (
        f"SELECT m.id, -(m.embedding <#> %s) AS score FROM {schema}.memories m WHERE {where} "
        "ORDER BY m.embedding <#> %s LIMIT %s"
    )


def _bm25_sum(n: str, df: str, avgdl: str) -> str:
    """FTS5's BM25 summed over a row's ``tf`` rows (columns ``tf``, ``doc_len``)."""
    return (
        f"sum(GREATEST(ln((GREATEST({n}, {df}) - {df} + 0.5) / ({df} + 0.5)), 1e-6) "
        f"* (tf.tf * {K1 + 1}) / (tf.tf + {K1} * ({1 - B} + {B} * tf.doc_len / {avgdl})))"
    )


def _ok_sql(schema: str, filters: FilterNode | None, visibility: Visibility) -> tuple[str, list[Any]]:
    """Visibility and filters as one condition (the rows failing it still count for N and df)."""
    params: list[Any] = []
    clauses = visibility_clauses(visibility, params)
    if filters is not None:
        filter_sql, filter_params = compile_filter(filters, fold=f"{schema}.fold")
        clauses.append(filter_sql)
        params.extend(filter_params)
    return " AND ".join(clauses) or "true", params


def _bm25_scope_first_sql(
    schema: str,
    scope_sql: tuple[str, list[Any]],
    ok_sql: tuple[str, list[Any]],
    lexemes: Sequence[str],
    limit: int,
) -> tuple[str, list[Any]]:
    """Keyword search of a small scope in one statement, starting from the scope's rows.

    Same result as :func:`stats_and_term_counts_sql` then :func:`bm25_sql`: N and the average
    length over the scope, terms in more than MAX_TERM_SHARE of it dropped (when two or more were
    given, the scope has MIN_SCOPE_FOR_DF rows and any term is rare enough), BM25 over the rest.
    The scope's rows are read through its btree index and tested for the terms one by one, instead
    of intersecting the table-wide GIN index (which, for a common word, reads every row of every
    scope holding it).
    """
    (scope_cond, scope_params), (ok, ok_params) = scope_sql, ok_sql
    cap = f"floor(st.n * {MAX_TERM_SHARE})"
    sql = f"""
WITH lex AS (SELECT t.lexeme, t.i FROM unnest(%s::text[]) WITH ORDINALITY AS t(lexeme, i)),
sc AS MATERIALIZED (
    SELECT m.id, m.seq, m.tsv, m.doc_len, ({ok}) AS ok
    FROM {schema}.memories m WHERE {scope_cond}
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
SELECT tf.id, {_bm25_sum("st.n", "kept.df", "GREATEST(st.avgdl, 1e-9)")} AS score
FROM tf JOIN kept USING (i) CROSS JOIN st
WHERE tf.ok
GROUP BY tf.id, tf.seq
ORDER BY score DESC, tf.seq
LIMIT %s"""
    params = [
        list(lexemes), *ok_params, *scope_params, tsquery_literal(lexemes), len(lexemes) >= 2, limit,
    ]  # fmt: skip
    return sql, params


def bm25_sql(
    schema: str,
    namespace: str,
    scope: Scope,
    filters: FilterNode | None,
    visibility: Visibility,
    lexemes: Sequence[str],
    limit: int,
    stats: tuple[float, float] | None = None,
) -> tuple[str, list[Any]]:
    """Top ``limit`` rows of the scope by BM25 over ``lexemes`` (each one phrase, as in FTS5).

    With ``stats`` (the scope's N and average length, from :func:`stats_and_term_counts_sql`, and
    ``lexemes`` already stripped of common terms): the rows are found through the GIN index.
    Without: the whole search runs from the scope's rows (see :func:`_bm25_scope_first_sql`).
    """
    scope_clauses, scope_params = scope_where(namespace, scope)
    ok, ok_params = _ok_sql(schema, filters, visibility)
    if stats is None:
        return _bm25_scope_first_sql(
            schema, (" AND ".join(scope_clauses), scope_params), (ok, ok_params), lexemes, limit
        )
    n_docs, avgdl = stats
    sql = f"""
WITH lex AS (SELECT t.lexeme, t.i FROM unnest(%s::text[]) WITH ORDINALITY AS t(lexeme, i)),
matched AS MATERIALIZED (
    SELECT m.id, m.seq, m.tsv, m.doc_len, ({ok}) AS ok
    FROM {schema}.memories m
    WHERE {" AND ".join(scope_clauses)} AND m.tsv @@ %s::tsquery
),
tf AS (
    SELECT mt.id, mt.seq, mt.doc_len, mt.ok, lex.i, cardinality(u.positions) AS tf
    FROM matched mt CROSS JOIN LATERAL unnest(mt.tsv) AS u JOIN lex ON lex.lexeme = u.lexeme
),
df AS (SELECT i, count(DISTINCT id)::float8 AS df FROM tf GROUP BY i)
SELECT tf.id, {_bm25_sum("%s::float8", "df.df", "%s::float8")} AS score
FROM tf JOIN df USING (i)
WHERE tf.ok
GROUP BY tf.id, tf.seq
ORDER BY score DESC, tf.seq
LIMIT %s"""
    params = [
        list(lexemes),
        *ok_params,
        *scope_params,
        tsquery_literal(lexemes),
        n_docs,
        max(avgdl, 1e-9),
        limit,
    ]
    return sql, params

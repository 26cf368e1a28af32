"""Candidates in context: a candidate statement of the PostgreSQL store wrapped so that its rows also
carry each memory's cosine with the query, its observation time and its scope neighbours (the memories
just before and after it by ``seq``, with their times and cosines).

A search then needs no statement of its own for the timeline neighbours nor for the vectors of the
keyword-only candidates and of the neighbours: both candidate statements (run at once on two
connections) bring them (see docs/deploy.md, "Search profile").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engram.ranking import Neighbour
from engram.stores.sql.dialect import scope_clauses
from engram.types import Candidate, Scope

_EPOCH = "extract(epoch FROM {}.observed_at)::float8"
Timeline = dict[str, tuple[float, Neighbour | None, Neighbour | None]]  # id -> (observed, prev, next)
Wrap = Callable[[str], tuple[str, list[Any]]]  # a candidate SQL -> (the SQL to run, params after its own)


def in_context_sql(schema: str, namespace: str, scope: Scope, inner: str) -> tuple[str, list[Any]]:
    """The rows of ``inner`` (columns ``id, score, seq``; any order) best first, each as (id, score,
    seq, cosine, observed, prev id, prev observed, prev cosine, next id, next observed, next cosine).

    The statement must declare ``WITH qv AS (SELECT <query vector or NULL>::vector AS v)`` before
    this SQL; params: ``inner``'s, then the returned ones.
    """
    sides = []
    params: list[Any] = []
    for alias, op, order in (("p", "<", "DESC"), ("n", ">", "ASC")):
        clauses, scope_params = scope_clauses(namespace, scope, "%s", alias)
        sides.append(
            f"LEFT JOIN LATERAL (SELECT {alias}.id, {alias}.observed_at, {alias}.embedding "
            f"FROM {schema}.memories {alias} WHERE {' AND '.join(clauses)} AND {alias}.seq {op} m.seq "
            f"ORDER BY {alias}.seq {order} LIMIT 1) {alias} ON true"
        )
        params.extend(scope_params)
    sql = (
        f"SELECT k.id, k.score, k.seq, -(m.embedding <#> qv.v), {_EPOCH.format('m')}, "
        f"p.id, {_EPOCH.format('p')}, -(p.embedding <#> qv.v), "
        f"n.id, {_EPOCH.format('n')}, -(n.embedding <#> qv.v) "
        f"FROM qv CROSS JOIN ({inner}) k JOIN {schema}.memories m ON m.seq = k.seq "
        f"{' '.join(sides)} ORDER BY k.score DESC, k.seq"
    )
    return sql, params


@dataclass(slots=True)
class Found:
    """What a candidate statement in context returned."""

    candidates: list[Candidate] = field(default_factory=list)  # best first
    cosines: dict[str, float] = field(default_factory=dict)  # the candidates' and their neighbours'
    timeline: Timeline = field(default_factory=dict)  # each candidate's time and neighbours
    size: int | None = None  # the scope's size, counted by a sized statement


def rows_found(rows: list[tuple[Any, ...]], context: bool, sized: bool) -> Found:
    """Rows of a candidate statement: (id, score, seq), or :func:`in_context_sql`'s with ``context``
    (cosines are NULL without a query vector); after the scope's size when ``sized`` (then a row
    with no id stands for none)."""
    out = Found()
    if sized:
        out.size = int(rows[0][0])
        rows = [r[1:] for r in rows if r[1] is not None]
    if not context:
        out.candidates = [Candidate(str(r[0]), float(r[1])) for r in rows]
        return out
    for mid, score, _seq, cos, ts, prev_id, prev_ts, prev_cos, next_id, next_ts, next_cos in rows:
        mid = str(mid)
        out.candidates.append(Candidate(mid, float(score)))
        prev = (str(prev_id), float(prev_ts)) if prev_id is not None else None
        next_ = (str(next_id), float(next_ts)) if next_id is not None else None
        out.timeline[mid] = (float(ts), prev, next_)
        for nid, value in ((mid, cos), (prev_id, prev_cos), (next_id, next_cos)):
            if nid is not None and value is not None:
                out.cosines[str(nid)] = float(value)
    return out

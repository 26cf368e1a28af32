"""Context-aware score fusion for hybrid search (measured on LoCoMo, see docs/benchmarks.md).

Conversation memories are rarely self-contained: the answer to "what did Evan recommend?" is often the
turn right after the question that named the topic. So, after gathering candidates:

1. each signal (cosine, BM25) is z-normalised over the candidates and their session neighbours, and the
   two are combined with the configured weights (z-scores make the two scales comparable without
   letting one outlier BM25 score squash every other keyword match, as division by the maximum does);
2. a memory inherits a share of the score of the memory stored just before and just after it in the
   same scope and session (``context_prev`` / ``context_next``);
3. it gets a bonus proportional to the best score in its session (``session_weight``): a session that
   clearly matches the query lifts its other memories;
4. when the query names a month and/or a year, memories observed in that month/year get
   ``date_weight``.

The result goes through a logistic function so that scores stay in (0, 1) and ``threshold`` keeps its
meaning of "higher is more relevant".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from engram.config import RetrievalConfig
from engram.types import MemoryContext

_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_MONTH_RE = re.compile(r"\b(" + "|".join(_MONTHS) + r")\b", re.IGNORECASE)
_YEAR_RE = re.compile(r"\b(19\d\d|20\d\d)\b")
# how far below a better-matching neighbour an inheriting memory stays (visible after rounding)
_BELOW = 0.01


def date_cues(query: str) -> tuple[set[int], set[int]]:
    """Months (1-12) and years named in ``query``."""
    months = {_MONTHS.index(m.lower()) + 1 for m in _MONTH_RE.findall(query)}
    years = {int(y) for y in _YEAR_RE.findall(query)}
    return months, years


def _z(values: np.ndarray, min_spread: float = 0.0) -> np.ndarray:
    """z-scores whose divisor is at least ``min_spread``: a signal that barely varies, or varies in one
    value only, cannot turn its noise or its lone match into an extreme score."""
    std = max(float(values.std()), min_spread)
    return (values - values.mean()) / std if std > 0 else np.zeros_like(values)


def contextual_scores(
    pool: list[str],
    cosine: Mapping[str, float],
    bm25: Mapping[str, float],
    contexts: Mapping[str, MemoryContext],
    query: str,
    config: RetrievalConfig,
    scope_size: int | None = None,
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """Final scores of the ``pool`` memories (in (0, 1)) and, per memory, the parts that made them.

    ``cosine`` must cover the pool and the neighbours named in ``contexts``; ``bm25`` covers the
    keyword candidates (a memory without a keyword score scores 0 there). Neighbour and session
    context apply only when ``scope_size`` (None: unknown, large) reaches ``context_min_memories``.
    """
    if not pool:
        return {}, {}
    with_context = scope_size is None or scope_size >= config.context_min_memories
    members = _members(pool, contexts, cosine) if with_context else list(dict.fromkeys(pool))
    index = {mid: i for i, mid in enumerate(members)}
    base = _base(members, cosine, bm25, config, floored=scope_size is not None)
    if with_context:
        smoothed = {m: _smoothed(m, base, index, contexts, config) for m in members}
        session_best = _session_best(members, smoothed, contexts, config.session_gap_minutes * 60)
    else:
        smoothed, session_best = {m: float(base[index[m]]) for m in members}, {}
    months, years = date_cues(query)
    scores: dict[str, float] = {}
    parts: dict[str, dict[str, Any]] = {}
    for m in pool:
        session_bonus = config.session_weight * max(session_best.get(m, 0.0), 0.0)
        date_bonus = config.date_weight if _on_asked_date(contexts.get(m), months, years) else 0.0
        raw = smoothed[m] + session_bonus + date_bonus
        scores[m] = round(1.0 / (1.0 + math.exp(-raw)), 6)
        parts[m] = {
            "base": round(float(base[index[m]]), 6),
            "with_neighbours": round(smoothed[m], 6),
            "session_bonus": round(session_bonus, 6),
            "date_bonus": date_bonus,
            "raw": round(raw, 6),
            "context": with_context,
        }
    return scores, parts


def _members(
    pool: list[str], contexts: Mapping[str, MemoryContext], cosine: Mapping[str, float]
) -> list[str]:
    """The pool plus the neighbours whose cosine is known (they take part in the normalisation)."""
    members = list(pool)
    for mid in pool:
        ctx = contexts.get(mid)
        if ctx is not None:
            members += [n for n in (ctx.prev_id, ctx.next_id) if n is not None and n in cosine]
    return list(dict.fromkeys(members))


def _base(
    members: list[str],
    cosine: Mapping[str, float],
    bm25: Mapping[str, float],
    config: RetrievalConfig,
    floored: bool = True,
) -> np.ndarray:
    """Weighted z-scores of cosine (clipped at 0) and BM25, each with a floored spread
    (``vector_min_spread``; :func:`_keyword_floor`) when ``floored``: only when the whole scope is
    scored. A larger scope's candidates are each signal's best 100, a truncated head whose spread is
    naturally small, and a floor calibrated on whole scopes would flatten it (LoCoMo R@10 0.722 -> 0.704)."""
    wv, wk = config.vector_weight, config.keyword_weight
    total = (wv + wk) or 1.0
    cos = np.array([max(cosine.get(m, 0.0), 0.0) for m in members], dtype=np.float64)
    kw = np.array([bm25.get(m, 0.0) for m in members], dtype=np.float64)
    zero = np.zeros(len(members), dtype=np.float64)
    kw_floor = _keyword_floor(kw, config.keyword_min_spread) if floored else 0.0
    kz = _z(kw, kw_floor) if wk else zero
    vz = _z(cos, config.vector_min_spread if floored else 0.0) if wv else zero
    out: np.ndarray = 0.5 * (wv * vz + wk * kz) / total
    return out


def _keyword_floor(kw: np.ndarray, share: float) -> float:
    """The least spread BM25 z-scores divide by: ``share`` of the mean BM25 of the memories that match,
    fading out as more of them match (a match rare in the scope is what a plain z-score inflates)."""
    matched = kw[kw > 0]
    if not matched.size:
        return 0.0
    return share * float(matched.mean()) * (1.0 - matched.size / kw.size)


def _smoothed(
    mid: str,
    base: np.ndarray,
    index: Mapping[str, int],
    contexts: Mapping[str, MemoryContext],
    config: RetrievalConfig,
) -> float:
    """``mid``'s score plus shares of its neighbours' (positive) scores, never reaching the score of a
    better-matching neighbour it inherited from: context helps the answer, it does not bury it."""
    own = float(base[index[mid]])
    ctx = contexts.get(mid)
    if ctx is None:
        return own
    total, ceiling = own, math.inf
    for other, share in ((ctx.prev_id, config.context_prev), (ctx.next_id, config.context_next)):
        if other is None or other not in index or share <= 0:
            continue
        theirs = float(base[index[other]])
        if theirs > 0:
            total += share * theirs
        if theirs > own:
            ceiling = min(ceiling, theirs - _BELOW)
    return min(total, max(ceiling, own))


def _session_best(
    members: list[str], smoothed: Mapping[str, float], contexts: Mapping[str, MemoryContext], gap_s: float
) -> dict[str, float]:
    """Best smoothed score among the members observed in the same session (time gaps <= ``gap_s``)."""
    timed = sorted((contexts[m].observed_ts, m) for m in members if m in contexts)
    best: dict[str, float] = {}
    group: list[str] = []
    last = None
    for ts, m in timed:
        if last is not None and ts - last > gap_s:
            _close(group, smoothed, best)
            group = []
        group.append(m)
        last = ts
    _close(group, smoothed, best)
    return best


def _close(group: list[str], smoothed: Mapping[str, float], best: dict[str, float]) -> None:
    if group:
        top = max(smoothed[m] for m in group)
        for m in group:
            best[m] = top


def _on_asked_date(ctx: MemoryContext | None, months: set[int], years: set[int]) -> bool:
    """Whether a memory was observed in the months and years the query names (if it names any)."""
    if not (months or years) or ctx is None:
        return False
    seen = datetime.fromtimestamp(ctx.observed_ts, UTC)
    return (not months or seen.month in months) and (not years or seen.year in years)


def best_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """One score per memory over searches of several phrasings of a question (query rewriting): the
    best score any phrasing gave it. Each run's scores come from :func:`contextual_scores`, so they
    share one scale in (0, 1) and ``threshold`` keeps its meaning."""
    best: dict[str, float] = {}
    for scores in runs:
        for mid, score in scores.items():
            if score > best.get(mid, -1.0):
                best[mid] = score
    return best

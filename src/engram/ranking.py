"""Ranking policy every store applies the same way: which query terms count in a scope, which
neighbours are conversational context. Stores gather the numbers; the rules are decided here.

Part of the retrieval layer (with :mod:`engram.retrieval` and :mod:`engram.fusion`); stores import it,
as they import :mod:`engram.keywords`, so that no store re-derives a rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from engram.types import MemoryContext

# A query term found in more than this share of the scope's memories carries no topic there (the
# speakers' names in a two-person conversation, for example): it is dropped from the keyword query.
# A global IDF would otherwise let a name that is rare globally but everywhere in the scope dominate BM25.
MAX_TERM_SHARE = 0.2
MIN_SCOPE_FOR_DF = 20  # smaller scopes keep every term (too few memories to judge)
T = TypeVar("T")


def term_count_cap(n_terms: int, scope_size: float) -> int | None:
    """The most memories of the scope a kept term may occur in; ``None`` when every term is kept
    anyway (a single term, or a scope too small to judge), so there is nothing to count."""
    if n_terms < 2 or scope_size < MIN_SCOPE_FOR_DF:
        return None
    return int(scope_size * MAX_TERM_SHARE)


def informative_terms(terms: Sequence[T], scope_size: float, counts: Mapping[T, int]) -> list[T]:
    """The terms present in at most MAX_TERM_SHARE of the scope (all of them if none is).

    ``counts`` may stop counting just past the cap (any count above it drops the term the same way).
    """
    cap = term_count_cap(len(terms), scope_size)
    if cap is None:
        return list(terms)
    kept = [term for term in terms if counts[term] <= cap]
    return kept or list(terms)


Neighbour = tuple[str, float]  # (memory id, observed_at as unix seconds)


def memory_context(
    observed_ts: float, prev: Neighbour | None, next_: Neighbour | None, session_gap_s: float
) -> MemoryContext:
    """A memory's timeline context: its scope neighbours count only when observed within the gap."""
    return MemoryContext(
        observed_ts,
        prev[0] if prev is not None and abs(observed_ts - prev[1]) <= session_gap_s else None,
        next_[0] if next_ is not None and abs(next_[1] - observed_ts) <= session_gap_s else None,
    )


Timeline = Mapping[str, tuple[float, Neighbour | None, Neighbour | None]]  # id -> (observed, prev, next)


def timeline_contexts(
    timeline: Timeline, session_gap_s: float, ids: Sequence[str] | None = None
) -> dict[str, MemoryContext]:
    """The :func:`memory_context` of each memory of ``timeline`` (of those among ``ids``, if given)."""
    wanted = timeline.keys() if ids is None else [mid for mid in ids if mid in timeline]
    return {mid: memory_context(*timeline[mid], session_gap_s) for mid in wanted}

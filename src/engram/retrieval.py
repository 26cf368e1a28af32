"""Hybrid retrieval: vector and keyword candidates, one fused score, optional reranking.

Both signals bring candidates from inside the scope. Every candidate gets its exact cosine (keyword-only
candidates have their vectors fetched) and its BM25; the two are z-normalised and weighted, then each
memory takes in part of its conversational neighbours' scores, a session bonus and a date cue
(engram/fusion.py; docs/retrieval.md says why and what each step is worth on LoCoMo).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engram.config import RetrievalConfig
from engram.filters import FilterNode
from engram.fusion import contextual_scores
from engram.interfaces import Reranker, Store
from engram.types import MemoryContext, MemoryRecord, Scope, Vector, Visibility


@dataclass(slots=True)
class Hit:
    """One search result before it becomes a dict."""

    record: MemoryRecord
    score: float
    explain: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SearchRequest:
    namespace: str
    scope: Scope
    filters: FilterNode | None
    visibility: Visibility
    query: str
    top_k: int
    threshold: float | None = None
    explain: bool = False


async def hybrid_search(
    store: Store,
    request: SearchRequest,
    query_vector: Vector,
    config: RetrievalConfig,
    reranker: Reranker | None = None,
) -> list[Hit]:
    """Search one scope; returns hits best first, at most ``top_k``, all at or above ``threshold``."""
    n = max(config.candidates, request.top_k)
    use_vector = config.vector_weight > 0
    use_keyword = config.keyword_weight > 0
    found = await store.hybrid_candidates(
        request.namespace,
        request.scope,
        request.filters,
        request.visibility,
        query_vector if use_vector else None,
        request.query if use_keyword else None,
        n,
    )
    cosine = {c.memory_id: c.score for c in found.vector}
    cosine.update(found.extra_cosines)
    bm25 = {c.memory_id: c.score for c in found.keyword}
    vector_rank = {c.memory_id: i + 1 for i, c in enumerate(found.vector)}
    keyword_rank = {c.memory_id: i + 1 for i, c in enumerate(found.keyword)}
    best_bm25 = max(bm25.values(), default=0.0)
    pool = list(cosine.keys() | bm25.keys())
    gap_s = config.session_gap_minutes * 60
    contexts = await store.memory_context(request.namespace, request.scope, pool, gap_s)
    if use_vector:
        await _neighbour_cosines(store, request.namespace, contexts, cosine, query_vector)
    # without filters the vector side brings the whole scope when it is smaller than ``n``
    scope_size = len(found.vector) if use_vector and len(found.vector) < n else None
    fused, parts = contextual_scores(pool, cosine, bm25, contexts, request.query, config, scope_size)
    ranked = sorted(fused, key=lambda mid: (-fused[mid], mid))
    if config.question_penalty > 0:
        ranked = await _question_penalty(store, request, ranked, fused, config)
    if reranker is not None:
        ranked, fused = await _rerank(store, request, reranker, ranked[: config.rerank_candidates], fused)
    if request.threshold is not None:
        ranked = [mid for mid in ranked if fused[mid] >= request.threshold]
    ranked = ranked[: request.top_k]
    records = {r.id: r for r in await store.get_many(request.namespace, ranked)}
    hits: list[Hit] = []
    for mid in ranked:
        record = records.get(mid)
        if record is None:  # deleted between the candidate query and now
            continue
        explain: dict[str, Any] = {}
        if request.explain:
            explain = {
                "vector": {"cosine": cosine.get(mid), "rank": vector_rank.get(mid)},
                "keyword": {"bm25": bm25.get(mid), "rank": keyword_rank.get(mid), "best_bm25": best_bm25},
                "weights": {"vector": config.vector_weight, "keyword": config.keyword_weight},
                "fused": fused[mid],
                "context": parts.get(mid),
            }
        hits.append(Hit(record, fused[mid], explain))
    return hits


async def _neighbour_cosines(
    store: Store,
    namespace: str,
    contexts: Mapping[str, MemoryContext],
    cosine: dict[str, float],
    query_vector: Vector,
) -> None:
    """Add to ``cosine`` the query's cosine with each context neighbour not scored yet."""
    neighbours = {
        n for c in contexts.values() for n in (c.prev_id, c.next_id) if n is not None and n not in cosine
    }
    if neighbours:
        for mid, vec in (await store.vectors_for(namespace, list(neighbours))).items():
            cosine[mid] = float(np.dot(vec, query_vector))


async def _question_penalty(
    store: Store, request: SearchRequest, ranked: list[str], fused: dict[str, float], config: RetrievalConfig
) -> list[str]:
    """Among the leading results, memories that ask rather than tell (their text ends with "?") lose
    ``question_penalty`` in logit space: a question shares the topic's words but holds no answer."""
    head = ranked[: max(request.top_k, config.rerank_candidates)]
    for record in await store.get_many(request.namespace, head):
        if record.text.rstrip().endswith("?"):
            s = min(max(fused[record.id], 1e-9), 1 - 1e-9)
            raw = math.log(s / (1 - s)) - config.question_penalty
            fused[record.id] = round(1.0 / (1.0 + math.exp(-raw)), 6)
    return sorted(head, key=lambda mid: (-fused[mid], mid)) + ranked[len(head) :]


async def _rerank(
    store: Store, request: SearchRequest, reranker: Reranker, ids: list[str], fused: dict[str, float]
) -> tuple[list[str], dict[str, float]]:
    records = await store.get_many(request.namespace, ids)
    scores = await reranker.rerank(request.query, [r.text for r in records])
    rescored = {r.id: 1.0 / (1.0 + math.exp(-s)) for r, s in zip(records, scores, strict=True)}
    return sorted(rescored, key=lambda mid: (-rescored[mid], mid)), {**fused, **rescored}

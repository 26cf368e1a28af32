"""Hybrid retrieval: vector and keyword candidates, one fused score, optional reranking.

Both signals bring candidates from inside the scope. Every candidate gets its exact cosine (keyword-only
candidates have their vectors fetched) and its BM25; the two are z-normalised and weighted, then each
memory takes in part of its conversational neighbours' scores, a session bonus and a date cue
(engram/fusion.py; docs/retrieval.md says why and what each step is worth on LoCoMo).

With an LLM, two optional steps (one call each, falling back with a note in the result when the call
fails): query rewriting searches keyword and paraphrase variants too, and reranking reorders the best
``rerank_candidates`` results (engram/rewrite.py, engram/rerankers/llm.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from engram.config import RetrievalConfig
from engram.errors import ConfigError, EngramError
from engram.filters import FilterNode
from engram.fusion import best_of, contextual_scores
from engram.interfaces import LLM, Embedder, HybridCandidates, ListwiseReranker, Reranker, Store
from engram.llms._retry import short_message
from engram.ranking import timeline_contexts
from engram.rewrite import rewrite_query
from engram.types import MemoryContext, MemoryRecord, Scope, Vector, Visibility

if TYPE_CHECKING:
    from engram.memory import AsyncMemory

AnyReranker = Reranker | ListwiseReranker
NO_RERANKER_NOTE = {"used": None, "ok": False, "error": "no reranker or LLM is configured"}
logger = logging.getLogger("engram.search")


@dataclass(slots=True)
class Hit:
    """One search result before it becomes a dict."""

    record: MemoryRecord
    score: float
    explain: dict[str, Any] = field(default_factory=dict)

    def to_item(self, explain: bool = False) -> dict[str, Any]:
        """The result dict: the memory's item plus ``score`` (and ``explain`` when asked)."""
        item = {**self.record.to_item(), "score": self.score}
        return {**item, "explain": self.explain} if explain else item


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


@dataclass(slots=True)
class Ranking:
    """One search's candidates with their scores, best first, before the cut to ``top_k``."""

    ranked: list[str]
    scores: dict[str, float]
    explain: dict[str, dict[str, Any]] = field(default_factory=dict)  # per memory, when asked
    records: dict[str, MemoryRecord] = field(default_factory=dict)  # read so far (read once per search)


@dataclass(slots=True)
class SearchOutcome:
    """Hits plus what the optional LLM steps did (``{"rerank": {...}, "rewrite": {...}}``, as asked)."""

    hits: list[Hit]
    notes: dict[str, Any] = field(default_factory=dict)


async def hybrid_search(
    store: Store,
    request: SearchRequest,
    query_vector: Vector,
    config: RetrievalConfig,
    reranker: AnyReranker | None = None,
) -> list[Hit]:
    """Search one scope; returns hits best first, at most ``top_k``, all at or above ``threshold``."""
    ranking = await rank_candidates(store, request, query_vector, config)
    if reranker is not None:
        ranking, _ = await rerank(store, request, ranking, reranker, config)
    return await collect_hits(store, request, ranking)


async def run_search(
    store: Store,
    embedder: Embedder,
    request: SearchRequest,
    config: RetrievalConfig,
    *,
    reranker: AnyReranker | None = None,
    rewriter: LLM | None = None,
) -> SearchOutcome:
    """The whole search: optional query variants (one LLM call), one ranking per phrasing merged
    (:func:`engram.fusion.best_of`), optional reranking, then the cut to ``threshold`` and ``top_k``."""
    notes: dict[str, Any] = {}
    queries = [request.query]
    if rewriter is not None:
        variants, notes["rewrite"] = await _query_variants(rewriter, request.query, config)
        queries += variants
    vectors = await embedder.embed(queries, kind="query")
    runs = [
        await rank_candidates(store, replace(request, query=q), vectors[i], config)
        for i, q in enumerate(queries)
    ]
    ranking = runs[0] if len(runs) == 1 else _merge(runs)
    if reranker is not None:
        ranking, notes["rerank"] = await rerank(store, request, ranking, reranker, config)
    return SearchOutcome(await collect_hits(store, request, ranking), notes)


async def rank_candidates(
    store: Store, request: SearchRequest, query_vector: Vector, config: RetrievalConfig
) -> Ranking:
    """Gather the scope's candidates for one query and fuse their signals into one score each."""
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
    pool = list(cosine.keys() | bm25.keys())
    contexts = await _contexts(store, request, found, pool, config.session_gap_minutes * 60)
    if use_vector:
        await _neighbour_cosines(store, request.namespace, contexts, cosine, query_vector, found)
    # without filters the vector side brings the whole scope when it is smaller than ``n``
    scope_size = len(found.vector) if use_vector and len(found.vector) < n else None
    fused, parts = contextual_scores(pool, cosine, bm25, contexts, request.query, config, scope_size)
    ranked = sorted(fused, key=lambda mid: (-fused[mid], mid))
    records: dict[str, MemoryRecord] = {}
    if config.question_penalty > 0:
        ranked = await _question_penalty(store, request, ranked, fused, config, records)
    explain: dict[str, dict[str, Any]] = {}
    if request.explain:
        vector_rank = {c.memory_id: i + 1 for i, c in enumerate(found.vector)}
        keyword_rank = {c.memory_id: i + 1 for i, c in enumerate(found.keyword)}
        best_bm25 = max(bm25.values(), default=0.0)
        explain = {
            mid: {
                "vector": {"cosine": cosine.get(mid), "rank": vector_rank.get(mid)},
                "keyword": {"bm25": bm25.get(mid), "rank": keyword_rank.get(mid), "best_bm25": best_bm25},
                "weights": {"vector": config.vector_weight, "keyword": config.keyword_weight},
                "fused": fused[mid],
                "context": parts.get(mid),
            }
            for mid in ranked
        }
    return Ranking(ranked, fused, explain, records)


async def collect_hits(store: Store, request: SearchRequest, ranking: Ranking) -> list[Hit]:
    """The ranking cut to ``threshold`` and ``top_k``, with each memory's record."""
    ranked = ranking.ranked
    if request.threshold is not None:
        ranked = [mid for mid in ranked if ranking.scores[mid] >= request.threshold]
    ranked = ranked[: request.top_k]
    records = await _records_of(store, request.namespace, ranking, ranked)
    return [
        Hit(records[mid], ranking.scores[mid], ranking.explain.get(mid, {}))
        for mid in ranked
        if mid in records  # a memory deleted between the candidate query and now is skipped
    ]


async def _contexts(
    store: Store, request: SearchRequest, found: HybridCandidates, pool: list[str], gap_s: float
) -> dict[str, MemoryContext]:
    """Each candidate's timeline context: from what the candidate call read, else asked for."""
    if found.timeline is None:
        return await store.memory_context(request.namespace, request.scope, pool, gap_s)
    return timeline_contexts(found.timeline, gap_s, pool)


async def _neighbour_cosines(
    store: Store,
    namespace: str,
    contexts: Mapping[str, MemoryContext],
    cosine: dict[str, float],
    query_vector: Vector,
    found: HybridCandidates,
) -> None:
    """Add to ``cosine`` the query's cosine with each context neighbour not scored yet (those the
    candidate call did not score come from their vectors)."""
    neighbours = {
        n for c in contexts.values() for n in (c.prev_id, c.next_id) if n is not None and n not in cosine
    }
    for mid in [n for n in neighbours if n in found.neighbour_cosines]:
        cosine[mid] = found.neighbour_cosines[mid]
        neighbours.discard(mid)
    if neighbours:
        for mid, vec in (await store.vectors_for(namespace, list(neighbours))).items():
            cosine[mid] = float(np.dot(vec, query_vector))


async def _records_of(
    store: Store, namespace: str, ranking: Ranking, ids: list[str]
) -> dict[str, MemoryRecord]:
    """The records of ``ids`` that exist: those the search read already, the rest read now (and kept)."""
    missing = [mid for mid in ids if mid not in ranking.records]
    if missing:
        ranking.records.update((r.id, r) for r in await store.get_many(namespace, missing))
    return {mid: ranking.records[mid] for mid in ids if mid in ranking.records}


async def _question_penalty(
    store: Store,
    request: SearchRequest,
    ranked: list[str],
    fused: dict[str, float],
    config: RetrievalConfig,
    records: dict[str, MemoryRecord],
) -> list[str]:
    """Among the leading results, memories that ask rather than tell (their text ends with "?") lose
    ``question_penalty`` in logit space: a question shares the topic's words but holds no answer.
    The records read are added to ``records``."""
    head = ranked[: max(request.top_k, config.rerank_candidates)]
    for record in await store.get_many(request.namespace, head):
        records[record.id] = record
        if record.text.rstrip().endswith("?"):
            s = min(max(fused[record.id], 1e-9), 1 - 1e-9)
            raw = math.log(s / (1 - s)) - config.question_penalty
            fused[record.id] = round(1.0 / (1.0 + math.exp(-raw)), 6)
    return sorted(head, key=lambda mid: (-fused[mid], mid)) + ranked[len(head) :]


def _merge(runs: list[Ranking]) -> Ranking:
    """Rankings of several phrasings of one question as one: each memory's best score (ties: the
    original question's order); ``explain`` adds the score each phrasing gave (``variants``)."""
    scores = best_of([run.scores for run in runs])
    first = runs[0].scores
    ranked = sorted(scores, key=lambda mid: (-scores[mid], -first.get(mid, 0.0), mid))
    explain: dict[str, dict[str, Any]] = {}
    if any(run.explain for run in runs):
        for mid in ranked:
            base = next(run.explain[mid] for run in runs if mid in run.explain)
            explain[mid] = {**base, "fused": scores[mid], "variants": [run.scores.get(mid) for run in runs]}
    return Ranking(ranked, scores, explain, {k: v for run in runs for k, v in run.records.items()})


async def _query_variants(llm: LLM, query: str, config: RetrievalConfig) -> tuple[list[str], dict[str, Any]]:
    """The LLM's variants of ``query`` and the note for the result (on failure: none, and why)."""
    note: dict[str, Any] = {"used": f"llm:{llm.name}", "ok": True}
    try:
        variants = await rewrite_query(llm, query, variants=config.rewrite_variants)
    except EngramError as e:
        logger.warning("query rewriting with %s failed; searching the query as given: %s", llm.name, e)
        return [], {**note, "ok": False, "error": _reason(e), "queries": [query]}
    return variants, {**note, "queries": [query, *variants]}


async def rerank(
    store: Store, request: SearchRequest, ranking: Ranking, reranker: AnyReranker, config: RetrievalConfig
) -> tuple[Ranking, dict[str, Any]]:
    """Reorder the best ``max(rerank_candidates, top_k)`` candidates with ``reranker``; when it fails
    the fused order stays and the note (``{"used", "ok", "candidates", "error"}``) says why."""
    head = ranking.ranked[: max(config.rerank_candidates, request.top_k)]
    records = await _records_of(store, request.namespace, ranking, head)
    head = [mid for mid in head if mid in records]
    note: dict[str, Any] = {"used": reranker.name, "ok": True, "candidates": len(head)}
    if len(head) < 2:
        return ranking, {**note, "reordered": 0}
    try:
        order, scores, moved = await _reorder(reranker, request, head, records, ranking.scores)
    except EngramError as e:
        logger.warning("reranking with %s failed; keeping the fused order: %s", reranker.name, e)
        return ranking, {**note, "ok": False, "error": _reason(e)}
    for position, mid in enumerate(order, start=1):
        if mid in ranking.explain:
            ranking.explain[mid]["rerank"] = {"position": position, "fused": ranking.scores[mid]}
    rest = [mid for mid in ranking.ranked if mid not in scores]
    reordered = Ranking(order + rest, {**ranking.scores, **scores}, ranking.explain, ranking.records)
    return reordered, {**note, "reordered": moved}


async def _reorder(
    reranker: AnyReranker,
    request: SearchRequest,
    ids: list[str],
    records: Mapping[str, MemoryRecord],
    fused: Mapping[str, float],
) -> tuple[list[str], dict[str, float], int]:
    """(new order, new scores, how many the reranker placed). A listwise reranker only orders, so the
    candidates keep the fused scores, handed out best first in the new order (scores stay descending
    and ``threshold`` keeps its scale); a scoring reranker's scores are squashed into (0, 1)."""
    texts = [records[mid].text for mid in ids]
    if isinstance(reranker, ListwiseReranker):
        listed = await reranker.order(request.query, texts, top_n=request.top_k)
        picked = [i for i in dict.fromkeys(listed) if 0 <= i < len(ids)]
        placed = set(picked)
        order = [ids[i] for i in picked] + [mid for i, mid in enumerate(ids) if i not in placed]
        slots = sorted((fused[mid] for mid in ids), reverse=True)
        return order, dict(zip(order, slots, strict=True)), len(picked)
    scores = await reranker.rerank(request.query, texts)
    rescored = {mid: 1.0 / (1.0 + math.exp(-s)) for mid, s in zip(ids, scores, strict=True)}
    return sorted(rescored, key=lambda mid: (-rescored[mid], mid)), rescored, len(ids)


def _reason(error: BaseException) -> str:
    """One line for a result's note: the error's class and the first line of its message."""
    lines = short_message(error, 300).splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


async def search_reranking_if_possible(
    memory: AsyncMemory, query: str, *, rerank: bool, **search_args: Any
) -> dict[str, Any]:
    """``memory.search(query, rerank=rerank, ...)``; when ``rerank`` is asked for and no reranker or
    LLM is configured, the plain ranking with a ``"rerank"`` note instead of an error. For callers
    that may always ask for it: mem0's clients (the server) and agents (the MCP tools)."""
    try:
        return await memory.search(query, rerank=rerank, **search_args)
    except ConfigError as e:
        if not rerank or e.details.get("field") != "rerank":
            raise
    found = await memory.search(query, **search_args)
    return {**found, "rerank": dict(NO_RERANKER_NOTE)}

"""The ``add(infer=True)`` pipeline: gather context, extract facts, deduplicate, plan the writes.

The engine stores the new messages and ``plan.new`` in one ``store.add`` call and reports
``plan.duplicates`` next to the store's outcomes. See docs/inference.md.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np

from engram.config import InferenceConfig
from engram.derived import EntityMention
from engram.errors import ExtractionError, ProviderError
from engram.extract.offline import rewrite
from engram.extract.speakers import looks_like_name
from engram.interfaces import LLM, Embedder, ExtractedFact, ExtractionRequest, Extractor, Store
from engram.types import (
    MemoryRecord,
    NewMemory,
    Scope,
    StoredMessage,
    Vector,
    Visibility,
    WriteOutcome,
    normalize_text,
    text_hash,
)

logger = logging.getLogger("engram.inference")
MAX_FACT_CHARS = 2_000
_RELATED_QUERY_MESSAGES = 16  # the latest new messages used to look up related memories
_NEAR_CANDIDATES = 5


@dataclass
class InferencePlan:
    """What one inferred ``add`` should write, and what it found already stored."""

    new: list[NewMemory]  # to write; each may carry .supersedes ids and .source_message_ids
    duplicates: list[WriteOutcome]  # event "NONE", id/existing_id = the existing memory, text = the fact
    extractor: str  # "offline" or the LLM name
    notes: list[str] = field(default_factory=list)  # e.g. "extraction failed; stored raw messages"
    entity_hints: dict[str, list[EntityMention]] = field(default_factory=dict)  # by text_hash of a fact


def build_extractor(llm: LLM | None) -> Extractor:
    """The LLM extractor when an LLM is configured, else the offline one."""
    if llm is None:
        from engram.extract.offline import OfflineExtractor

        return OfflineExtractor()
    from engram.extract.llm import LLMExtractor

    return LLMExtractor(llm)


@dataclass(slots=True)
class _Fact:
    text: str
    hash: str
    sources: list[str]
    actor_id: str | None
    role: str | None
    supersedes: list[str]
    vector: Vector | None = None


async def plan_inferred_add(
    *,
    namespace: str,
    scope: Scope,
    messages: list[StoredMessage],
    store: Store,
    embedder: Embedder,
    extractor: Extractor,
    config: InferenceConfig,
    custom_instructions: str | None,
    prompt: str | None,
    metadata: dict[str, Any],
    expires_at: date | None,
    observed_at: datetime,
) -> InferencePlan:
    """Extract facts from ``messages`` and decide which are new, duplicates, or superseding."""
    usable = [m for m in messages if m.role != "system" and m.content.strip()]
    if not usable:
        return InferencePlan([], [], extractor.name, ["no user or assistant content to extract from"])
    recent = await store.recent_messages(namespace, scope, config.recent_messages)
    related = await _related(namespace, scope, usable, store, embedder, config.related_memories)
    request = ExtractionRequest(
        messages=list(messages),
        recent=recent,
        related=related,
        observed_at=observed_at,
        custom_instructions=custom_instructions,
        prompt=prompt,
    )
    try:
        result = await extractor.extract(request)
    except (ExtractionError, ProviderError) as e:
        if config.on_extraction_failure == "raise":
            raise
        logger.warning("extraction with %s failed; storing the raw messages: %s", extractor.name, e)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        new = await _raw_memories(scope, usable, embedder, metadata, expires_at, observed_at)
        note = f"extraction failed ({type(e).__name__}: {reason}); stored the raw messages instead"
        return InferencePlan(new, [], extractor.name, [note])

    facts = _merge_exact(_clean(result.facts, usable, {r.id for r in related}))
    if not facts:
        return InferencePlan([], [], result.extractor, [])
    vectors = await embedder.embed([f.text for f in facts])
    for fact, vector in zip(facts, vectors, strict=True):
        fact.vector = np.asarray(vector, dtype=np.float32)
    existing = await store.find_by_hash(namespace, scope, [f.hash for f in facts])
    # exact duplicates go to the store, which links their sources and answers NONE with the existing id
    exact = [f for f in facts if f.hash in existing]
    fresh = [f for f in facts if f.hash not in existing]
    keep, duplicates = await _near_duplicates(namespace, scope, fresh, store, config.near_duplicate_threshold)
    planned = {id(f) for f in [*exact, *keep]}
    new = [_memory(f, scope, metadata, expires_at, observed_at) for f in facts if id(f) in planned]
    hints = {text_hash(f.text): f.entities for f in result.facts if f.entities is not None and f.text}
    return InferencePlan(new, duplicates, result.extractor, [], hints)


async def _related(
    namespace: str,
    scope: Scope,
    usable: list[StoredMessage],
    store: Store,
    embedder: Embedder,
    limit: int,
) -> list[MemoryRecord]:
    """The current memories most similar to any of the new messages (best match per memory)."""
    if limit <= 0:
        return []
    queries = usable[-_RELATED_QUERY_MESSAGES:]
    vectors = await embedder.embed([m.content for m in queries])
    best: dict[str, float] = {}
    for vector in vectors:
        for candidate in await store.vector_candidates(namespace, scope, None, Visibility(), vector, limit):
            best[candidate.memory_id] = max(best.get(candidate.memory_id, -1.0), candidate.score)
    ranked = sorted(best, key=lambda memory_id: -best[memory_id])[:limit]
    return await store.get_many(namespace, ranked) if ranked else []


def _clean(facts: list[ExtractedFact], usable: list[StoredMessage], related: set[str]) -> list[_Fact]:
    message_ids = {m.id for m in usable}
    all_ids = [m.id for m in usable]
    out: list[_Fact] = []
    for fact in facts:
        text = re.sub(r"\s+", " ", fact.text or "").strip()
        if not text:
            continue
        if len(text) > MAX_FACT_CHARS:
            text = text[:MAX_FACT_CHARS].rstrip() + "..."
        sources = [s for s in dict.fromkeys(fact.source_message_ids) if s in message_ids] or list(all_ids)
        supersedes = [s for s in dict.fromkeys(fact.supersedes) if s in related]
        out.append(_Fact(text, text_hash(text), sources, fact.actor_id, fact.role, supersedes))
    return out


def _absorb(into: _Fact, other: _Fact) -> None:
    into.sources.extend(s for s in other.sources if s not in into.sources)
    into.supersedes.extend(s for s in other.supersedes if s not in into.supersedes)


def _merge_exact(facts: list[_Fact]) -> list[_Fact]:
    """Facts with the same normalized text in one batch become one (sources merged)."""
    by_hash: dict[str, _Fact] = {}
    for fact in facts:
        if fact.hash in by_hash:
            _absorb(by_hash[fact.hash], fact)
        else:
            by_hash[fact.hash] = fact
    return list(by_hash.values())


async def _near_duplicates(
    namespace: str, scope: Scope, facts: list[_Fact], store: Store, threshold: float
) -> tuple[list[_Fact], list[WriteOutcome]]:
    """Split ``facts`` into new ones and near-duplicates of current memories in exactly ``scope``.

    A fact is a near-duplicate when its cosine similarity to a memory reaches ``threshold`` and the two
    agree on numbers, proper names and negation, or when it restates a raw message stored by
    ``add(infer=False)`` ("I love sci-fi" already covers "alice loves sci-fi").
    """
    found: list[list[tuple[str, float]]] = []
    for fact in facts:
        assert fact.vector is not None
        candidates = await store.vector_candidates(
            namespace, scope, None, Visibility(), fact.vector, _NEAR_CANDIDATES
        )
        found.append([(c.memory_id, c.score) for c in candidates])
    wanted = list(dict.fromkeys(memory_id for row in found for memory_id, _ in row))
    records = {r.id: r for r in await store.get_many(namespace, wanted)} if wanted else {}
    keep: list[_Fact] = []
    duplicates: list[WriteOutcome] = []
    for fact, row in zip(facts, found, strict=True):
        match = None
        for memory_id, score in row:
            record = records.get(memory_id)
            if record is None or record.scope != scope or memory_id in fact.supersedes:
                continue
            if (score >= threshold and same_claims(fact.text, record.text)) or _restates(fact, record):
                match = memory_id
                break
        if match is not None:
            duplicates.append(WriteOutcome(match, fact.text, "NONE", existing_id=match))
            continue
        twin = next(
            (k for k in keep if _cosine(k, fact) >= threshold and same_claims(k.text, fact.text)), None
        )
        if twin is not None:
            _absorb(twin, fact)
            continue
        keep.append(fact)
    return keep, duplicates


_NUMBER_WORDS = {
    word: str(i)
    for i, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "  # noqa: SIM905
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NEGATIONS = {
    "not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "dislike",
    "dislikes", "disliked", "hate", "hates", "hated", "stopped", "quit", "anymore", "longer",
}  # fmt: skip
_WORD = re.compile(r"[\w']+", re.UNICODE)


def _claims(text: str) -> tuple[frozenset[str], frozenset[str], bool]:
    words = _WORD.findall(text)
    numbers = frozenset(
        _NUMBER_WORDS.get(w.lower(), w.lstrip("0") or "0")
        for w in words
        if w.isdigit() or w.lower() in _NUMBER_WORDS
    )
    names = frozenset(w.lower().removesuffix("'s") for w in words[1:] if w[:1].isupper())
    negated = any(w.lower() in _NEGATIONS or w.lower().endswith("n't") for w in words)
    return numbers, names, negated


def same_claims(a: str, b: str) -> bool:
    """True when two similar sentences agree on numbers, capitalised names and negation.

    Embeddings barely tell "Bob has two kids" from "Bob has three kids" or "likes" from "does not
    like"; this cheap check keeps such pairs apart.
    """
    return _claims(a) == _claims(b)


def _restates(fact: _Fact, record: MemoryRecord) -> bool:
    """Whether a first-person memory (stored raw by infer=False) already says this fact."""
    if (record.role or "user").lower() != "user" or not _FIRST_PERSON.search(record.text):
        return False
    speaker = record.actor_id or (record.scope.user_id if looks_like_name(record.scope.user_id) else "User")
    restated = normalize_text(rewrite(record.text, me=speaker or "User", you="the assistant"))
    wanted = normalize_text(fact.text)
    return bool(wanted) and f" {wanted} " in f" {restated} "


_FIRST_PERSON = re.compile(r"\b(?:I|I'm|I've|I'd|I'll|my|me|we|our)\b", re.IGNORECASE)


def _cosine(a: _Fact, b: _Fact) -> float:
    assert a.vector is not None and b.vector is not None
    denominator = float(np.linalg.norm(a.vector) * np.linalg.norm(b.vector)) or 1.0
    return float(np.dot(a.vector, b.vector)) / denominator


def _memory(
    fact: _Fact, scope: Scope, metadata: dict[str, Any], expires_at: date | None, observed_at: datetime
) -> NewMemory:
    assert fact.vector is not None
    return NewMemory(
        id=str(uuid.uuid4()),
        text=fact.text,
        hash=fact.hash,
        scope=scope,
        vector=fact.vector,
        actor_id=fact.actor_id,
        role=fact.role,
        metadata=dict(metadata),
        observed_at=observed_at,
        expires_at=expires_at,
        source_message_ids=list(fact.sources),
        supersedes=list(fact.supersedes),
    )


async def _raw_memories(
    scope: Scope,
    usable: list[StoredMessage],
    embedder: Embedder,
    metadata: dict[str, Any],
    expires_at: date | None,
    observed_at: datetime,
) -> list[NewMemory]:
    """One memory per message, as ``infer=False`` stores them (the fallback when extraction fails)."""
    vectors = await embedder.embed([m.content for m in usable])
    return [
        NewMemory(
            id=str(uuid.uuid4()),
            text=m.content,
            hash=text_hash(m.content),
            scope=scope,
            vector=np.asarray(vectors[i], dtype=np.float32),
            actor_id=m.name,
            role=m.role,
            metadata=dict(metadata),
            observed_at=observed_at,
            expires_at=expires_at,
            source_message_ids=[m.id],
        )
        for i, m in enumerate(usable)
    ]

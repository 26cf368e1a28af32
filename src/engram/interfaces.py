"""The small typed seams between the engine and its backends.

A backend is a class with a ``Settings`` pydantic model (``extra="forbid"``) and a constructor that
takes an instance of it; constructors do no I/O (connections and models are opened lazily).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from engram.derived import EntityLink, EntityMention, StoredProfile
from engram.errors import ConfigError, ConflictError
from engram.filters import FilterNode
from engram.ranking import Neighbour
from engram.types import (
    Candidate,
    ChangeEvent,
    EmbedderInfo,
    HistoryEntry,
    MemoryContext,
    MemoryRecord,
    NewMemory,
    RestoredMemory,
    Scope,
    StoredMessage,
    Vector,
    Visibility,
    WriteOutcome,
)

EmbedTexts = Callable[[list[str]], Awaitable[Vector]]  # texts -> their vectors (documents)
# an add's outcomes -> the entity links to record with them (pure: no I/O; see Store.add)
EntityLinker = Callable[[Sequence[WriteOutcome]], Sequence[EntityLink]]


@dataclass(frozen=True, slots=True)
class Reembed:
    """How :meth:`Store.reembed` runs: memories per transaction, ``progress(done, total)`` after each."""

    batch_size: int = 64
    progress: Callable[[int, int], None] | None = None


class BackendSettings(BaseModel):
    """Base of every backend's settings: unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Embedder(ABC):
    """Turns texts into L2-normalised float32 vectors."""

    Settings: ClassVar[type[BackendSettings]]

    @property
    @abstractmethod
    def info(self) -> EmbedderInfo:
        """Name and dimension; recorded by the store that holds the vectors."""

    @abstractmethod
    async def embed(self, texts: Sequence[str], *, kind: Literal["document", "query"] = "document") -> Vector:
        """Embed a batch; returns an array of shape (len(texts), dim)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources (HTTP clients, sessions)."""


class Reranker(ABC):
    """Scores (query, document) pairs; higher is more relevant."""

    Settings: ClassVar[type[BackendSettings]]
    name: ClassVar[str]

    @abstractmethod
    async def rerank(self, query: str, documents: Sequence[str]) -> list[float]:
        """One score per document, in the same order."""


class ListwiseReranker(ABC):
    """Orders candidates by reading them together (an LLM, for example) instead of scoring each one."""

    @property
    @abstractmethod
    def name(self) -> str:
        """What search reports as the reranker used (for example ``"llm:openai:gpt-4.1-mini"``)."""

    @abstractmethod
    async def order(self, query: str, documents: Sequence[str], *, top_n: int) -> list[int]:
        """Indices into ``documents``, most relevant first: at most ``top_n``, valid, no repeats.

        Documents left out follow the listed ones in their previous order. Raises an
        :class:`~engram.errors.EngramError` when no usable order came back.
        """


class LLM(ABC):
    """A chat model that answers with text (JSON when ``json_schema`` is given)."""

    Settings: ClassVar[type[BackendSettings]]

    @property
    @abstractmethod
    def name(self) -> str:
        """Provider and model, for results and errors (for example ``"openai:gpt-4.1-mini"``)."""

    @abstractmethod
    async def complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        json_schema: dict[str, Any] | None = None,
        temperature: float | None = None,
    ) -> str:
        """Send chat ``messages`` ([{"role", "content"}]) and return the reply text."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


@dataclass(slots=True)
class ExtractionRequest:
    """Everything an extractor sees for one ``add``."""

    messages: list[StoredMessage]  # the new messages, already stored, with ids
    recent: list[StoredMessage]  # earlier messages of the same scope, oldest first
    related: list[MemoryRecord]  # existing memories most related to the new messages
    observed_at: datetime
    custom_instructions: str | None = None
    prompt: str | None = None  # per-call instructions (``add(prompt=...)``)


@dataclass(slots=True)
class ExtractedFact:
    """One memory an extractor proposes."""

    text: str
    source_message_ids: list[str] = field(default_factory=list)
    actor_id: str | None = None
    role: str | None = None
    supersedes: list[str] = field(default_factory=list)  # ids of related memories this fact replaces
    entities: list[EntityMention] | None = None  # named entities, when the extractor gives them


@dataclass(slots=True)
class ExtractionResult:
    facts: list[ExtractedFact]
    extractor: str  # "offline" or the LLM's name
    raw_output: str | None = None


class Extractor(ABC):
    """Turns new messages into facts worth remembering."""

    @property
    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    async def extract(self, request: ExtractionRequest) -> ExtractionResult: ...


@dataclass(frozen=True, slots=True)
class ListPage:
    records: list[MemoryRecord]
    total: int


@dataclass(frozen=True, slots=True)
class StoredMemory:
    """A stored memory as an export shows it: the record, its history and its source messages."""

    record: MemoryRecord
    history: list[HistoryEntry]
    messages: list[StoredMessage]


@dataclass(frozen=True, slots=True)
class Restored:
    """What :meth:`Store.restore_many` did with one memory (see :func:`restore_one`).

    Nothing was written unless ``written``. ``conflict``: the :class:`ConflictError`'s message (a
    current memory of the scope says the same under another id, or a history id is taken). Neither:
    the id is taken, by ``stored`` (this namespace's memory with that id) or, when ``stored`` is None,
    by a deleted memory or one of another namespace.
    """

    written: bool = False
    conflict: str | None = None
    stored: StoredMemory | None = None


class Store(ABC):
    """Owns everything that must commit together: memories, vectors, keyword index, history, messages.

    Every method takes the ``namespace`` (a project, in the server) so that one store can hold many
    tenants; an id from another namespace behaves as if it did not exist. Scopes in reads are
    match-filters: ids that are ``None`` match anything.
    """

    Settings: ClassVar[type[BackendSettings]]

    @abstractmethod
    async def open(self, embedder: EmbedderInfo) -> None:
        """Create or migrate the schema and check that ``embedder`` matches what filled the store.

        Raises :class:`~engram.errors.EmbedderMismatchError` when it does not.
        """

    @abstractmethod
    async def close(self) -> None: ...

    async def reembed(self, embedder: EmbedderInfo, embed: EmbedTexts, how: Reembed) -> int:
        """Open the store (instead of :meth:`open`) for ``embedder`` even when another embedder filled it,
        and give every memory (all namespaces, deleted ones too) the vector ``embed`` returns for its
        text, ``how.batch_size`` memories per transaction; then record ``embedder`` so that :meth:`open`
        accepts it and refuses the old one. ``how.progress(done, total)`` after each batch. An interrupted
        run leaves the store refusing every open until it is run again with the same embedder, which
        resumes after the last committed batch. Returns how many memories were re-embedded (0 when the
        store already holds ``embedder``'s vectors). The store is open afterwards.
        """
        raise ConfigError(f"The {type(self).__name__} store cannot re-embed its memories")

    # -- writes: each call is one transaction, history included ------------------------------
    @abstractmethod
    async def add(
        self,
        namespace: str,
        messages: Sequence[StoredMessage],
        memories: Sequence[NewMemory],
        *,
        entities: EntityLinker | None = None,
    ) -> list[WriteOutcome]:
        """Store messages and memories atomically (with the links ``entities`` makes of the outcomes,
        in the same transaction, when the store keeps derived data).

        A memory whose ``hash`` is already current in exactly the same scope is not stored again:
        its sources are linked to the existing memory and the outcome is ``NONE`` with that id.
        Likewise a ``raw`` memory (a message stored as given) whose exact content was already sent in
        an earlier message of this scope that still has current memories derived from it (an
        ``infer=True`` add of the same message): ``NONE`` with the first such memory's id.
        ``supersedes`` marks those memories superseded by the new one (history ``SUPERSEDE``).
        """

    @abstractmethod
    async def update(
        self,
        namespace: str,
        memory_id: str,
        *,
        text: str | None = None,
        text_hash: str | None = None,
        vector: Vector | None = None,
        metadata: dict[str, Any] | None = None,
        expires_at: date | None = None,
        clear_expiry: bool = False,
    ) -> MemoryRecord:
        """Change text (with its hash and vector), replace metadata and/or set (``expires_at``) or
        remove (``clear_expiry``) the expiration date; one history ``UPDATE``."""

    @abstractmethod
    async def delete(self, namespace: str, memory_id: str) -> None:
        """Delete one memory (history ``DELETE`` keeps its text). NotFoundError if absent."""

    @abstractmethod
    async def delete_scope(self, namespace: str, scope: Scope) -> int:
        """Delete every memory matching a non-empty scope; returns how many."""

    @abstractmethod
    async def reset(self, namespace: str | None = None) -> None:
        """Remove everything in ``namespace`` (all namespaces when ``None``)."""

    async def restore(self, namespace: str, memory: RestoredMemory) -> bool:
        """Write one exported memory back as it was: its id, dates, expiry, supersession link, metadata,
        history rows (with their ids) and source messages, in one transaction. Messages already stored
        (same id) are linked, not copied. Returns ``False``, writing nothing, when the memory's id is
        taken (in any namespace, deleted memories included). Raises ConflictError when a current memory
        of the same scope already says the same (another id).
        """
        raise ConfigError(f"The {type(self).__name__} store cannot restore exported memories")

    async def restore_many(
        self, namespace: str, batches: AsyncIterable[Sequence[RestoredMemory]]
    ) -> AsyncIterator[list[Restored]]:
        """Restore exported memories batch by batch, in order, each as :func:`restore_one` would:
        yields one :class:`Restored` per memory of each batch, after writing it. The outcomes carry
        what they report, so nothing needs reading back (a store may commit several batches, or all,
        at once). The default restores one memory per transaction; the PostgreSQL store overrides it
        to write whole batches with ``COPY``.
        """
        async for batch in batches:
            yield [await restore_one(self, namespace, memory) for memory in batch]

    # -- reads --------------------------------------------------------------------------------
    @abstractmethod
    async def get(self, namespace: str, memory_id: str) -> MemoryRecord | None: ...

    @abstractmethod
    async def get_many(self, namespace: str, memory_ids: Sequence[str]) -> list[MemoryRecord]:
        """The existing memories among ``memory_ids``, in the given order."""

    @abstractmethod
    async def list_memories(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        *,
        limit: int,
        offset: int = 0,
    ) -> ListPage:
        """Memories in scope, newest observation first, with the total count."""

    @abstractmethod
    async def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]: ...

    @abstractmethod
    async def messages_for(self, namespace: str, memory_id: str) -> list[StoredMessage]:
        """The raw messages a memory came from, oldest first."""

    @abstractmethod
    async def recent_messages(self, namespace: str, scope: Scope, limit: int) -> list[StoredMessage]:
        """The latest messages stored in exactly this scope, oldest first."""

    @abstractmethod
    async def find_by_hash(self, namespace: str, scope: Scope, hashes: Sequence[str]) -> dict[str, str]:
        """Current memories in exactly ``scope`` having one of ``hashes``: {hash: memory_id}."""

    # -- candidate generators (narrowed to the scope before scoring) ---------------------------
    @abstractmethod
    async def vector_candidates(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        query_vector: Vector,
        limit: int,
    ) -> list[Candidate]:
        """Top ``limit`` by cosine similarity (exact within the scope), best first."""

    @abstractmethod
    async def keyword_candidates(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        query_text: str,
        limit: int,
    ) -> list[Candidate]:
        """Top ``limit`` by BM25 (score: higher is better), best first."""

    @abstractmethod
    async def vectors_for(self, namespace: str, memory_ids: Sequence[str]) -> dict[str, Vector]:
        """Stored vectors of the given memories (for dedup and reranking)."""

    # -- derived data: entity links and profiles (optional; see ``keeps_derived``) -----------------
    keeps_derived: ClassVar[bool] = False  # True when the methods below are implemented

    def _no_derived(self) -> ConfigError:
        return ConfigError(f"The {type(self).__name__} store does not keep entities or profiles")

    async def link_entities(
        self, namespace: str, links: Sequence[EntityLink], *, replace: Sequence[str] = ()
    ) -> None:
        """Record which named entities memories mention (one transaction; repeats are ignored),
        first dropping every link of the memories in ``replace`` (their text changed)."""
        raise self._no_derived()

    async def entity_links(self, namespace: str, scope: Scope, visibility: Visibility) -> list[EntityLink]:
        """The entity links of the visible memories matching ``scope``."""
        raise self._no_derived()

    async def get_profile(self, namespace: str, user_id: str) -> StoredProfile | None:
        """The stored profile of a user, if one was built."""
        raise self._no_derived()

    async def put_profile(self, namespace: str, profile: StoredProfile) -> None:
        """Store (replace) a user's profile."""
        raise self._no_derived()

    async def forget_derived(self, namespace: str | None, user_id: str | None = None) -> None:
        """Drop profiles (of one user, one namespace or all) and the links of deleted memories."""
        raise self._no_derived()

    # -- change feed: committed changes in commit order (optional; see ``keeps_changes``) ---------
    keeps_changes: ClassVar[bool] = False  # True when the method below is implemented

    async def changes(self, after: str | None, limit: int) -> list[ChangeEvent]:
        """Up to ``limit`` committed changes of every namespace after the position ``after`` (None:
        from the start), oldest first. Once a change is returned, no change can later appear before
        it: a reader that goes on from the last one's ``cursor`` sees each change exactly once (the
        transactional outbox webhook deliveries are relayed from). Imported history is not in it."""
        raise ConfigError(f"The {type(self).__name__} store keeps no change feed")

    async def memory_context(
        self, namespace: str, scope: Scope, memory_ids: Sequence[str], session_gap_s: float
    ) -> dict[str, MemoryContext]:
        """Timeline neighbours and observation times of ``memory_ids`` within ``scope``.

        Optional: a store that returns ``{}`` (the default) gets plain fusion without context.
        """
        return {}

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
        """Both signals' candidates, plus the cosine of keyword-only candidates, in one call.

        The default runs the generators above; a store may override it to save round trips.
        """
        vector_task = (
            self.vector_candidates(namespace, scope, filters, visibility, query_vector, limit)
            if query_vector is not None
            else _no_candidates()
        )
        keyword_task = (
            self.keyword_candidates(namespace, scope, filters, visibility, query_text, limit)
            if query_text is not None
            else _no_candidates()
        )
        vector_hits, keyword_hits = await asyncio.gather(vector_task, keyword_task)
        missing = keyword_only(vector_hits, keyword_hits)
        vectors = await self.vectors_for(namespace, missing) if missing and query_vector is not None else {}
        return HybridCandidates(vector_hits, keyword_hits, cosines_of(vectors, query_vector))


class Restorer(Protocol):
    """What :func:`restore_one` needs: a store, or a store's open transaction."""

    async def get(self, namespace: str, memory_id: str) -> MemoryRecord | None: ...

    async def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]: ...

    async def messages_for(self, namespace: str, memory_id: str) -> list[StoredMessage]: ...

    async def restore(self, namespace: str, memory: RestoredMemory) -> bool: ...


async def restore_one(target: Restorer, namespace: str, memory: RestoredMemory) -> Restored:
    """The import rule for one memory: when its id is a memory of ``namespace``, that memory is
    returned and nothing is written; otherwise :meth:`Store.restore` writes it, unless the id is
    taken elsewhere or it conflicts (a current twin under another id, a history id taken)."""
    memory_id = memory.record.id
    found = await target.get(namespace, memory_id)
    if found is not None:
        history = await target.history(namespace, memory_id)
        return Restored(stored=StoredMemory(found, history, await target.messages_for(namespace, memory_id)))
    try:
        written = await target.restore(namespace, memory)
    except ConflictError as e:
        return Restored(conflict=e.message)
    return Restored(written=written)


@dataclass(frozen=True, slots=True)
class HybridCandidates:
    """What :meth:`Store.hybrid_candidates` returns."""

    vector: list[Candidate]  # best first
    keyword: list[Candidate]  # best first
    extra_cosines: dict[str, float]  # exact cosine of keyword candidates the vector side did not bring
    # A store that read the candidates' timeline on the way (saving :meth:`Store.memory_context`):
    # each candidate's (observed_at as unix seconds, previous, next scope neighbour as (id, observed))
    timeline: dict[str, tuple[float, Neighbour | None, Neighbour | None]] | None = None
    neighbour_cosines: dict[str, float] = field(default_factory=dict)  # the neighbours' cosines, then


def keyword_only(vector_hits: list[Candidate], keyword_hits: list[Candidate]) -> list[str]:
    """Ids the keyword side brought that the vector side did not."""
    seen = {c.memory_id for c in vector_hits}
    return [c.memory_id for c in keyword_hits if c.memory_id not in seen]


def cosines_of(vectors: dict[str, Vector], query_vector: Vector | None) -> dict[str, float]:
    """Cosine of each (normalised) vector with the query vector."""
    if query_vector is None:
        return {}
    return {memory_id: float(np.dot(vector, query_vector)) for memory_id, vector in vectors.items()}


async def _no_candidates() -> list[Candidate]:
    return []

"""SQLStore: :class:`~engram.interfaces.Store` implemented once over a SQL dialect.

The public methods check their input, decide the rules (through :mod:`.writes` and
:mod:`engram.ranking`) and hand the SQL to the dialect's session (:class:`.dialect.Session`) inside the
dialect's read or write transaction. A dialect's store subclasses this and implements the hooks below.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from functools import partial
from typing import Any, TypeVar

import numpy as np

from engram.derived import EntityLink, StoredProfile
from engram.errors import NotFoundError, StoreError
from engram.filters import FilterNode
from engram.interfaces import (
    EmbedTexts,
    EntityLinker,
    HybridCandidates,
    ListPage,
    Reembed,
    Store,
    cosines_of,
    keyword_only,
)
from engram.keywords import query_terms
from engram.ranking import timeline_contexts
from engram.stores.sql import changes, derived, reembed, writes
from engram.stores.sql.dialect import Query, Session, check_dim, check_embedder
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

T = TypeVar("T")


class SQLStore(Store):
    """The storage rules over a dialect; see docs/architecture.md, "Adding a SQL store"."""

    _embedder = EmbedderInfo("", 0)
    _dim = 0

    # -- what a dialect's store implements ---------------------------------------------------------
    @abstractmethod
    async def _prepare(self, embedder: EmbedderInfo) -> dict[str, str]:
        """Connect and migrate; record ``embedder`` if the store is new. The stored embedder
        (``{"embedder": name, "dim": "384"}``), or ``{}`` when it was just recorded."""

    @abstractmethod
    async def _start(self) -> None:
        """Become ready to serve (pools, flags) once the embedder is known to match."""

    _remedy = "use a new store"  # what else the user can do when the embedder does not match

    @abstractmethod
    def _location(self) -> str:
        """What this store is, for messages ("The store at ...")."""

    @abstractmethod
    async def _read(
        self, namespace: str, fn: Callable[[Session], Awaitable[T]], *, primary: bool = False
    ) -> T:
        """Run ``fn`` on a session for reading (``primary``: a read that decides a write)."""

    @abstractmethod
    async def _transact(self, namespace: str | None, fn: Callable[[Session], Awaitable[T]]) -> T:
        """Run ``fn`` on a session inside one write transaction (``None``: every namespace)."""

    # -- lifecycle ---------------------------------------------------------------------------------
    async def open(self, embedder: EmbedderInfo) -> None:
        stored = await self._prepare(embedder)
        check_embedder(stored, embedder, self._location(), self._remedy)
        self._embedder = embedder
        self._dim = embedder.dim
        await self._start()

    async def reembed(self, embedder: EmbedderInfo, embed: EmbedTexts, how: Reembed) -> int:
        stored = await self._prepare(embedder)
        after = reembed.plan(stored, embedder)
        self._embedder = embedder
        self._dim = embedder.dim
        await self._start()
        if after is None:
            return 0
        await self._transact(
            None, partial(reembed.start, embedder=embedder, after=after, stored_dim=int(stored["dim"]))
        )
        done, total = await self._read("", partial(reembed.counts, after=after), primary=True)
        count = 0
        while rows := await self._read(
            "", partial(reembed.batch, after=after, limit=how.batch_size), primary=True
        ):
            vectors = await embed([text for _, text in rows])
            if vectors.shape != (len(rows), embedder.dim):
                raise StoreError(
                    f"The embedder returned vectors of shape {vectors.shape} for {len(rows)} texts; "
                    f"{embedder.name!r} declares {embedder.dim} dimensions"
                )
            pairs = [(seq, vectors[i]) for i, (seq, _) in enumerate(rows)]
            await self._transact(None, partial(reembed.write, embedder=embedder, vectors=pairs))
            after, count = rows[-1][0], count + len(rows)
            if how.progress is not None:
                how.progress(done + count, total)
        await self._transact(None, partial(reembed.finish, embedder=embedder))
        return count

    def _check_dim(self, vector: Vector, field: str) -> None:
        check_dim(vector, self._dim, field)

    # -- writes ------------------------------------------------------------------------------------
    async def add(
        self,
        namespace: str,
        messages: Sequence[StoredMessage],
        memories: Sequence[NewMemory],
        *,
        entities: EntityLinker | None = None,
    ) -> list[WriteOutcome]:
        for mem in memories:
            self._check_dim(mem.vector, "memories[].vector")

        async def work(s: Session) -> list[WriteOutcome]:
            done = await writes.add(s, namespace, list(messages), list(memories))
            links = entities(done.outcomes) if entities is not None else ()
            if links:  # derived data, committed with the memories it describes
                await derived.link(s.db(), namespace, links, ())
            return done.outcomes

        return await self._transact(namespace, work)

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
        if text is not None:
            if text_hash is None or vector is None:
                raise StoreError("update with text needs its hash and vector")
            self._check_dim(vector, "vector")
        change = writes.Change(text, text_hash, vector, metadata, expires_at, clear_expiry)
        return await self._transact(namespace, lambda s: writes.update(s, namespace, memory_id, change))

    async def delete(self, namespace: str, memory_id: str) -> None:
        if await self._transact(namespace, lambda s: writes.delete(s, namespace, memory_id)) == 0:
            raise NotFoundError(f"Memory {memory_id!r} not found", details={"memory_id": memory_id})

    async def delete_scope(self, namespace: str, scope: Scope) -> int:
        if scope.is_empty():
            raise StoreError("delete_scope needs a non-empty scope")
        return await self._transact(namespace, lambda s: writes.delete(s, namespace, scope))

    async def reset(self, namespace: str | None = None) -> None:
        await self._transact(namespace, lambda s: s.reset(namespace, self._embedder))

    async def restore(self, namespace: str, memory: RestoredMemory) -> bool:
        self._check_dim(memory.vector, "vector")
        return await self._transact(namespace, lambda s: writes.restore(s, namespace, memory))

    # -- reads -------------------------------------------------------------------------------------
    async def get(self, namespace: str, memory_id: str) -> MemoryRecord | None:
        found = await self.get_many(namespace, [memory_id])
        return found[0] if found else None

    async def get_many(self, namespace: str, memory_ids: Sequence[str]) -> list[MemoryRecord]:
        if not memory_ids:
            return []
        return await self._read(namespace, lambda s: s.records(namespace, list(memory_ids)))

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
        q = Query(namespace, scope, filters, visibility, limit)
        return await self._read(namespace, lambda s: s.list_page(q, offset))

    async def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        return await self._read(namespace, lambda s: s.history(namespace, memory_id))

    async def messages_for(self, namespace: str, memory_id: str) -> list[StoredMessage]:
        return await self._read(namespace, lambda s: s.messages_for(namespace, memory_id))

    async def recent_messages(self, namespace: str, scope: Scope, limit: int) -> list[StoredMessage]:
        if limit <= 0:
            return []
        # From the primary (as find_by_hash): add() builds on what it returns.
        return await self._read(namespace, lambda s: s.recent_messages(namespace, scope, limit), primary=True)

    async def find_by_hash(self, namespace: str, scope: Scope, hashes: Sequence[str]) -> dict[str, str]:
        if not hashes:
            return {}
        return await self._read(
            namespace, lambda s: s.current_ids(namespace, scope, list(hashes)), primary=True
        )

    async def vectors_for(self, namespace: str, memory_ids: Sequence[str]) -> dict[str, Vector]:
        if not memory_ids:
            return {}
        return await self._read(namespace, lambda s: s.vectors(namespace, list(memory_ids)))

    # -- derived data: entity links and profiles ---------------------------------------------------
    keeps_derived = True

    async def link_entities(
        self, namespace: str, links: Sequence[EntityLink], *, replace: Sequence[str] = ()
    ) -> None:
        if links or replace:
            await self._transact(namespace, lambda s: derived.link(s.db(), namespace, links, replace))

    async def entity_links(self, namespace: str, scope: Scope, visibility: Visibility) -> list[EntityLink]:
        q = Query(namespace, scope, None, visibility)
        return await self._read(namespace, lambda s: derived.links(s.db(), namespace, s.where(q)))

    async def get_profile(self, namespace: str, user_id: str) -> StoredProfile | None:
        return await self._read(namespace, lambda s: derived.get_profile(s.db(), namespace, user_id))

    async def put_profile(self, namespace: str, profile: StoredProfile) -> None:
        await self._transact(namespace, lambda s: derived.put_profile(s.db(), namespace, profile))

    async def forget_derived(self, namespace: str | None, user_id: str | None = None) -> None:
        await self._transact(namespace, lambda s: derived.forget(s.db(), namespace, user_id))

    # -- change feed (see :mod:`.changes`) -----------------------------------------------------------
    keeps_changes = True
    _horizon = "1"  # SQL of the feed's horizon: every row of a transaction below it has committed

    async def changes(self, after: str | None, limit: int) -> list[ChangeEvent]:
        if after is not None:
            changes.position(after)
        if limit <= 0:
            return []
        return await self._read(
            "", lambda s: changes.since(s.db(), self._horizon, after, limit), primary=True
        )

    # -- candidates --------------------------------------------------------------------------------
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
        q = Query(namespace, scope, filters, visibility, limit)
        vector = np.ascontiguousarray(query_vector, dtype=np.float32)
        return await self._read(namespace, lambda s: s.vector_candidates(q, vector))

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
        """Both signals' candidates through :meth:`_hybrid` (the input checked here, once)."""
        vector = None
        if query_vector is not None:
            self._check_dim(query_vector, "query_vector")
            vector = np.ascontiguousarray(query_vector, dtype=np.float32)
        terms = query_terms(query_text) if query_text is not None else []
        if limit <= 0:
            return HybridCandidates([], [], {})
        return await self._hybrid(Query(namespace, scope, filters, visibility, limit), vector, terms)

    async def _hybrid(self, q: Query, query_vector: Vector | None, terms: list[str]) -> HybridCandidates:
        """Both generators on one session (for SQLite: one trip to the worker thread); a dialect
        may override it to save round trips."""
        return await self._read(q.namespace, lambda s: both_candidates(s, q, query_vector, terms))

    async def keyword_candidates(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        query_text: str,
        limit: int,
    ) -> list[Candidate]:
        terms = query_terms(query_text)
        if not terms or limit <= 0:
            return []
        q = Query(namespace, scope, filters, visibility, limit)
        return await self._read(namespace, lambda s: s.keyword_candidates(q, terms))

    async def memory_context(
        self, namespace: str, scope: Scope, memory_ids: Sequence[str], session_gap_s: float
    ) -> dict[str, MemoryContext]:
        if not memory_ids:
            return {}
        found = await self._read(namespace, lambda s: s.neighbours(namespace, scope, list(memory_ids)))
        return timeline_contexts(found, session_gap_s)


async def both_candidates(
    s: Session, q: Query, query_vector: Vector | None, terms: list[str]
) -> HybridCandidates:
    """Vector and keyword candidates, and the cosine of the keyword-only ones, on one session."""
    vector = await s.vector_candidates(q, query_vector) if query_vector is not None else []
    keyword = await s.keyword_candidates(q, terms) if terms else []
    missing = keyword_only(vector, keyword)
    vectors = await s.vectors(q.namespace, missing) if missing and query_vector is not None else {}
    return HybridCandidates(vector, keyword, cosines_of(vectors, query_vector))

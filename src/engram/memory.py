"""AsyncMemory: the engine. Every public method of :class:`engram.Memory` runs one of these."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from engram.adding import (
    AddPlan,
    add_results,
    check_add,
    embed_kept,
    plan_add,
    plans_for_items,
    raw_memories,
)
from engram.config import MemoryConfig
from engram.derived import EntityMention, StoredProfile
from engram.entities import group_entities, has_entity_filter, links_for, resolve_entity_filter
from engram.errors import NotFoundError, ValidationError
from engram.filters import split_scope
from engram.inputs import (
    check_filters,
    check_int,
    check_length,
    check_memory_id,
    check_memory_text,
    check_text,
    clean_metadata,
    parse_expiration,
    require_scope,
    scope_from,
)
from engram.interfaces import LLM, Embedder, EntityLinker, Extractor, Reembed, Reranker, Store
from engram.limits import Limits
from engram.profiles import (
    MAX_PROFILE_MEMORIES,
    build_profile,
    check_schema,
    fingerprint,
    profile_view,
    summarize,
)
from engram.retrieval import SearchRequest, run_search
from engram.types import (
    MemoryRecord,
    Message,
    Scope,
    Visibility,
    WriteOutcome,
    text_hash,
)
from engram.wiring import Backends, build_backends, close_with_loop, open_store, search_models


class AsyncMemory:
    """Long-term memory for agents: add conversations, search what matters later.

    ``AsyncMemory()`` works offline with no configuration: SQLite under ``$ENGRAM_HOME`` (default
    ``~/.engram``), the bundled MiniLM embedder and the offline extractor. Pass a :class:`MemoryConfig`
    (or its dict) to choose backends by name, or pass backend instances directly.
    """

    def __init__(
        self,
        config: MemoryConfig | dict[str, Any] | None = None,
        *,
        store: Store | None = None,
        embedder: Embedder | None = None,
        llm: LLM | None = None,
        reranker: Reranker | None = None,
        extractor: Extractor | None = None,
        _backends: Backends | None = None,
        _namespace: str | None = None,
    ) -> None:
        self._is_root = _backends is None
        if _backends is not None:
            self._b = _backends
            self.namespace = _namespace or _backends.config.namespace
            return
        self._b = build_backends(config, store, embedder, llm, reranker, extractor)
        self.namespace = self._b.config.namespace

    @classmethod
    def from_config(cls, config: dict[str, Any] | MemoryConfig) -> AsyncMemory:
        """Build from a config dict (mem0's shape is accepted: llm, embedder, vector_store...)."""
        return cls(config)

    @property
    def config(self) -> MemoryConfig:
        return self._b.config

    @property
    def limits(self) -> Limits:
        """The input contract this engine enforces (``config.limits``)."""
        return self._b.config.limits

    @property
    def store(self) -> Store:
        return self._b.store

    @property
    def embedder(self) -> Embedder:
        return self._b.embedder

    @property
    def llm(self) -> LLM | None:
        """The configured LLM, if any (without one, ``add`` may still build one from the environment)."""
        return self._b.llm

    def namespace_view(self, namespace: str) -> AsyncMemory:
        """The same backends, isolated to another namespace (one per project in the server)."""
        if not isinstance(namespace, str) or not namespace.strip():
            raise ValidationError("namespace must be a non-empty string", field="namespace")
        view = self._b.views.get(namespace)
        if view is None:
            view = AsyncMemory(_backends=self._b, _namespace=namespace)
            self._b.views[namespace] = view
        return view

    async def _ready(self, reembed: Reembed | None = None) -> int:
        if self._b.ready:
            return 0
        if self._b.lock is None:
            self._b.lock = asyncio.Lock()
        async with self._b.lock:
            if self._b.ready:
                return 0
            count = await open_store(self._b, reembed)
            self._b.ready = True
            self._b.watch = asyncio.get_running_loop().create_task(close_with_loop(self, self._b))
            return count

    async def reembed(
        self, *, batch_size: int = 64, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Give every memory of the store (every namespace) a vector from this engine's embedder, then
        use the store: for a store filled by another embedder, which the other methods refuse.

        ``batch_size`` memories per transaction, ``progress(done, total)`` after each; run it again to
        resume an interrupted run. Returns how many were re-embedded (0: the store already matched).
        Stop other processes using the store first. See docs/embedders.md.
        """
        check_int(batch_size, "batch_size", low=1, high=10_000)
        return await self._ready(Reembed(batch_size, progress))

    async def open(self) -> None:
        """Open (create or migrate) the store now; every method does this on first use anyway."""
        await self._ready()

    async def close(self) -> None:
        """Close the store and release provider clients (again: nothing happens)."""
        watch, self._b.watch = self._b.watch, None
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()
        if self._b.ready:
            await self._b.store.close()
            self._b.ready = False
        await self._b.embedder.aclose()
        if self._b.llm is not None:
            await self._b.llm.aclose()

    async def __aenter__(self) -> AsyncMemory:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- add -------------------------------------------------------------------------------------
    async def add(
        self,
        messages: str | dict[str, Any] | list[dict[str, Any]],
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        app_id: str | None = None,
        run_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        infer: bool = True,
        timestamp: int | float | str | None = None,
        expiration_date: str | None = None,
        prompt: str | None = None,
    ) -> dict[str, Any]:
        """Remember a conversation. Returns ``{"results": [{"id", "memory", "event"}, ...]}``.

        ``infer=True`` extracts short facts (with the configured LLM, or the offline extractor);
        ``infer=False`` stores each non-system message as given. Exact duplicates in the same scope
        are not stored twice: they come back with event ``NONE`` and the existing id.
        """
        args: dict[str, Any] = {"messages": messages, "metadata": metadata, "infer": infer, "prompt": prompt}
        args |= {"user_id": user_id, "agent_id": agent_id, "app_id": app_id, "run_id": run_id}
        args |= {"timestamp": timestamp, "expiration_date": expiration_date}
        plan = plan_add(self.limits, args)
        await self._ready()
        if plan.infer:
            return await self._add_inferred(plan)
        return await self._write_raw(plan, (await self._embed_kept([plan]))[0])

    async def add_many(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Several ``add`` calls (each item holds ``add``'s arguments), one result per item, in order.

        Every item is validated before anything is written; the messages of all ``infer=False``
        items are embedded in one model call. Each item is still its own transaction.
        """
        plans = plans_for_items(self.limits, items)
        await self._ready()
        raw = [p for p in plans if not p.infer]
        vectors = await self._embed_kept(raw)
        by_plan = {id(p): vectors[i] for i, p in enumerate(raw)}
        return [
            await self._add_inferred(p) if p.infer else await self._write_raw(p, by_plan[id(p)])
            for p in plans
        ]

    def check_add(
        self,
        messages: Any,
        metadata: Any,
        prompt: Any,
        infer: Any,
        user_id: str | None = None,
        agent_id: str | None = None,
        app_id: str | None = None,
        run_id: str | None = None,
    ) -> tuple[list[Message], dict[str, Any]]:
        """Check an add's arguments against :attr:`limits` (what the server checks before queueing)."""
        ids = {"user_id": user_id, "agent_id": agent_id, "app_id": app_id, "run_id": run_id}
        return check_add(self.limits, messages, metadata, prompt, infer, **ids)

    async def _embed_kept(self, plans: list[AddPlan]) -> list[Any]:
        return await embed_kept(self._b.embedder, plans, self._b.config.retrieval.chunk_chars)

    async def _write_raw(self, plan: AddPlan, vectors: Any) -> dict[str, Any]:
        memories = raw_memories(plan, vectors)
        outcomes = await self._b.store.add(
            self.namespace, plan.stored, memories, entities=self._linker(plan.scope, {})
        )
        return {"results": add_results(outcomes, memories)}

    async def _add_inferred(self, add: AddPlan) -> dict[str, Any]:
        from engram.inference import plan_inferred_add

        plan = await plan_inferred_add(
            namespace=self.namespace,
            scope=add.scope,
            messages=add.stored,
            store=self._b.store,
            embedder=self._b.embedder,
            extractor=self._extractor(),
            config=self._b.config.inference,
            custom_instructions=self._b.config.custom_instructions,
            prompt=add.prompt,
            metadata=add.meta,
            expires_at=add.expires_at,
            observed_at=add.observed_at,
        )
        linker = self._linker(add.scope, plan.entity_hints, plan.duplicates)
        outcomes = await self._b.store.add(self.namespace, add.stored, plan.new, entities=linker)
        results = add_results([*outcomes, *plan.duplicates], plan.new)
        answer: dict[str, Any] = {"results": results, "extractor": plan.extractor}
        if plan.notes:
            answer["notes"] = list(plan.notes)
        return answer

    def _llm(self) -> LLM | None:
        """The configured LLM (or one from the environment when ``llm_from_env``), else None."""
        if self._b.llm is None and self._b.config.llm_from_env:
            from engram.llms import llm_from_environment

            self._b.llm = llm_from_environment()
        return self._b.llm

    def _extractor(self) -> Extractor:
        if self._b.extractor is None:
            from engram.inference import build_extractor

            self._b.extractor = build_extractor(self._llm())
        return self._b.extractor

    def _linker(
        self, scope: Scope, hints: dict[str, list[EntityMention]], extra: Sequence[WriteOutcome] = ()
    ) -> EntityLinker | None:
        """What names the entities of an add's outcomes (and of ``extra`` ones): the extractor's
        entities, else the rules'; the store records them in the add's transaction."""
        if not self._b.store.keeps_derived:
            return None
        exclude = tuple(v for v in scope.as_dict().values() if v)
        return lambda outcomes: links_for([*outcomes, *extra], hints, exclude=exclude)

    # -- search and reads ------------------------------------------------------------------------
    async def search(
        self,
        query: str,
        *,
        filters: dict[str, Any] | None = None,
        top_k: int = 20,
        threshold: float | None = None,
        rerank: bool = False,
        explain: bool = False,
        include_superseded: bool = False,
        show_expired: bool = False,
        user_id: str | None = None,
        agent_id: str | None = None,
        app_id: str | None = None,
        run_id: str | None = None,
        limit: int | None = None,
        all_scopes: bool = False,
        rewrite: bool | None = None,
    ) -> dict[str, Any]:
        """Most relevant memories in a scope: ``{"results": [item + "score"]}``, best first.

        ``rerank=True`` reorders the best candidates with the reranker, else the LLM; ``rewrite=True``
        also searches the LLM's keyword and paraphrase variants of the query. Either adds a note
        (``"rerank"``/``"rewrite"``: ``{"used", "ok", ...}``); a failed call keeps the plain search.
        ``all_scopes=True`` searches every scope of the namespace (for admin tools such as the dashboard).
        """
        if not isinstance(query, str) or not query.strip():
            raise ValidationError("query must be a non-empty string", field="query")
        check_text(check_length(query, "query", "max_query_chars", self.limits.max_query_chars), "query")
        top_k = check_int(
            limit if limit is not None else top_k, "top_k", low=1, high=self.limits.max_page_size
        )
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1
        ):
            raise ValidationError("threshold must be a number between 0 and 1", field="threshold")
        scope, tree = self._scope_and_filters(filters, user_id, agent_id, app_id, run_id, all_scopes)
        reranker, llm = search_models(self._b, self._llm, bool(rerank), rewrite)
        await self._ready()
        tree = await self._entity_tree(scope, tree, Visibility(include_superseded, show_expired))
        request = SearchRequest(
            self.namespace,
            scope,
            tree,
            Visibility(include_superseded, show_expired),
            query,
            top_k,
            float(threshold) if threshold is not None else None,
            explain,
        )
        b = self._b
        found = await run_search(
            b.store, b.embedder, request, b.config.retrieval, reranker=reranker, rewriter=llm
        )
        return {"results": [hit.to_item(explain) for hit in found.hits], **found.notes}

    def _scope_and_filters(
        self,
        filters: Any,
        user_id: str | None,
        agent_id: str | None,
        app_id: str | None,
        run_id: str | None,
        all_scopes: bool = False,
    ) -> tuple[Scope, Any]:
        limits = self.limits
        kwargs_scope = scope_from(
            required=False, limits=limits, user_id=user_id, agent_id=agent_id, app_id=app_id, run_id=run_id
        )
        check_filters(filters, limits)
        scope, tree = split_scope(filters, kwargs_scope=kwargs_scope)
        if all_scopes and scope.is_empty():
            return scope, tree
        return require_scope(scope, limits), tree

    async def _entity_tree(self, scope: Scope, tree: Any, visibility: Visibility) -> Any:
        """The filter with its ``entity`` conditions turned into memory-id conditions."""
        if not has_entity_filter(tree):
            return tree
        links = await self._b.store.entity_links(self.namespace, scope, visibility)
        return resolve_entity_filter(tree, group_entities(links))

    async def get(self, memory_id: str) -> dict[str, Any] | None:
        """The memory with this id, or ``None``."""
        check_memory_id(memory_id, self.limits)
        await self._ready()
        record = await self._b.store.get(self.namespace, memory_id)
        return record.to_item() if record else None

    async def get_all(
        self,
        *,
        filters: dict[str, Any] | None = None,
        top_k: int = 100,
        offset: int = 0,
        include_superseded: bool = False,
        show_expired: bool = False,
        user_id: str | None = None,
        agent_id: str | None = None,
        app_id: str | None = None,
        run_id: str | None = None,
        limit: int | None = None,
        all_scopes: bool = False,
    ) -> dict[str, Any]:
        """Memories of a scope, most recently observed first: ``{"results": [...], "total": n}``.

        ``all_scopes=True`` lists every scope of the namespace (for admin tools such as the dashboard).
        """
        top_k = check_int(limit if limit is not None else top_k, "top_k", low=1, high=100_000)
        offset = check_int(offset, "offset", low=0, high=10**9)
        scope, tree = self._scope_and_filters(filters, user_id, agent_id, app_id, run_id, all_scopes)
        await self._ready()
        tree = await self._entity_tree(scope, tree, Visibility(include_superseded, show_expired))
        page = await self._b.store.list_memories(
            self.namespace,
            scope,
            tree,
            Visibility(include_superseded, show_expired),
            limit=top_k,
            offset=offset,
        )
        return {"results": [r.to_item() for r in page.records], "total": page.total}

    async def update(
        self,
        memory_id: str,
        text: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        data: str | None = None,
        expiration_date: str | None = None,
        clear_expiration: bool = False,
    ) -> dict[str, Any]:
        """Change a memory's text and/or replace its metadata (``data`` is mem0's name for ``text``);
        ``expiration_date`` (``YYYY-MM-DD``) sets when it expires, ``clear_expiration`` makes it permanent."""
        check_memory_id(memory_id, self.limits)
        if text is None:
            text = data
        expires_at = parse_expiration(expiration_date)
        if clear_expiration and expires_at is not None:
            raise ValidationError(
                "give expiration_date or clear_expiration, not both", field="expiration_date"
            )
        if text is None and metadata is None and expires_at is None and not clear_expiration:
            raise ValidationError("update needs text (or data), metadata or an expiration", field="text")
        if text is not None:
            text = check_memory_text(text, self.limits)
        meta = clean_metadata(metadata, limits=self.limits) if metadata is not None else None
        await self._ready()
        vector = (await self._b.embedder.embed([text]))[0] if text is not None else None
        record = await self._b.store.update(
            self.namespace,
            memory_id,
            text=text,
            text_hash=text_hash(text) if text is not None else None,
            vector=vector,
            metadata=meta,
            expires_at=expires_at,
            clear_expiry=bool(clear_expiration),
        )
        linker = self._linker(record.scope, {}) if text is not None else None
        if linker is not None:  # the new text's entities replace the old text's
            links = linker([WriteOutcome(record.id, record.text, "UPDATE")])
            await self._b.store.link_entities(self.namespace, links, replace=[record.id])
        return {"message": "Memory updated successfully!", **record.to_item()}

    async def delete(self, memory_id: str) -> dict[str, Any]:
        """Delete one memory (its history keeps the text)."""
        check_memory_id(memory_id, self.limits)
        await self._ready()
        await self._b.store.delete(self.namespace, memory_id)
        return {"message": "Memory deleted successfully!", "id": memory_id}

    async def delete_all(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        app_id: str | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Delete every memory of one scope. Refuses to run without a scope."""
        scope = scope_from(required=True, user_id=user_id, agent_id=agent_id, app_id=app_id, run_id=run_id)
        await self._ready()
        count = await self._b.store.delete_scope(self.namespace, scope)
        if self._b.store.keeps_derived:
            await self._b.store.forget_derived(self.namespace, user_id)
        return {"message": "Memories deleted successfully!", "deleted": count}

    async def history(self, memory_id: str) -> list[dict[str, Any]]:
        """Every change of one memory, oldest first (ADD, UPDATE, SUPERSEDE, DELETE)."""
        check_memory_id(memory_id, self.limits)
        await self._ready()
        return [h.to_item() for h in await self._b.store.history(self.namespace, memory_id)]

    async def sources(self, memory_id: str) -> list[dict[str, Any]]:
        """The raw messages a memory came from (provenance), oldest first."""
        check_memory_id(memory_id, self.limits)
        await self._ready()
        if await self._b.store.get(self.namespace, memory_id) is None:
            raise NotFoundError(f"Memory {memory_id!r} not found", details={"memory_id": memory_id})
        return [
            {
                "id": m.id,
                "role": m.role,
                "name": m.name,
                "content": m.content,
                "observed_at": m.observed_at.isoformat(),
                **m.scope.as_dict(),
            }
            for m in await self._b.store.messages_for(self.namespace, memory_id)
        ]

    # -- entities, profiles, summaries ------------------------------------------------------------
    async def entities(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        app_id: str | None = None,
        run_id: str | None = None,
        filters: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Named entities of a scope's memories, most mentioned first (see docs/api.md)."""
        scope, _ = self._scope_and_filters(filters, user_id, agent_id, app_id, run_id)
        await self._ready()
        links = await self._b.store.entity_links(self.namespace, scope, Visibility())
        return {"results": [e.to_item() for e in group_entities(links)]}

    async def _user_records(self, user_id: str) -> list[MemoryRecord]:
        check_text(user_id, "user_id")
        scope = scope_from(required=True, limits=self.limits, user_id=user_id)
        limit = MAX_PROFILE_MEMORIES * 20
        await self._ready()
        page = await self._b.store.list_memories(self.namespace, scope, None, Visibility(), limit=limit)
        return page.records

    async def profile(self, user_id: str, *, build: bool = True) -> dict[str, Any]:
        """A user's profile, built on first use (``build=False``: status ``missing`` instead);
        ``stale`` turns true when the user's memories change (:meth:`refresh_profile` rebuilds)."""
        records = await self._user_records(user_id)
        stored = await self._b.store.get_profile(self.namespace, user_id)
        if not records:
            return profile_view(user_id, None, "insufficient_data", stale=False)
        if stored is None:
            if build:
                return await self.refresh_profile(user_id)
            return profile_view(user_id, None, "missing", stale=False)
        return profile_view(
            user_id, stored.body, "succeeded", stale=stored.body.get("fingerprint") != fingerprint(records)
        )

    async def refresh_profile(
        self, user_id: str, *, schema: dict[str, Any] | None = None, instructions: str | None = None
    ) -> dict[str, Any]:
        """Build and store a user's profile now (LLM when configured, else offline)."""
        chosen = check_schema(schema) if schema is not None else None
        records = await self._user_records(user_id)
        if not records:
            return profile_view(user_id, None, "insufficient_data", stale=False)
        stored = await self._b.store.get_profile(self.namespace, user_id)
        generation = int(stored.body.get("generation_count", 0)) + 1 if stored else 1
        body = await build_profile(
            user_id, records, schema=chosen, instructions=instructions, llm=self._llm(), generation=generation
        )
        await self._b.store.put_profile(self.namespace, StoredProfile(user_id, body))
        return profile_view(user_id, body, "succeeded", stale=False)

    async def summary(
        self,
        *,
        filters: dict[str, Any] | None = None,
        top_k: int = 200,
        user_id: str | None = None,
        agent_id: str | None = None,
        app_id: str | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """A readable summary of the memories matching a filter, with the ids it was built from."""
        found = await self.get_all(
            filters=filters, top_k=top_k, user_id=user_id, agent_id=agent_id, app_id=app_id, run_id=run_id
        )
        ids = [item["id"] for item in found["results"]]
        texts = [item["memory"] for item in found["results"]]
        text, summarizer = await summarize(texts, self._llm()) if texts else ("", "none")
        return {"summary": text, "memory_ids": ids, "count": len(ids), "summarizer": summarizer}

    async def stats(self) -> dict[str, Any]:
        """How many current memories this namespace holds (every scope)."""
        await self._ready()
        everything = await self._b.store.list_memories(self.namespace, Scope(), None, Visibility(), limit=1)
        return {"total_memories": everything.total}

    async def reset(self) -> None:
        """Empty this namespace; on the root instance, empty the whole store."""
        await self._ready()
        await self._b.store.reset(None if self._is_root else self.namespace)
        if self._b.store.keeps_derived:
            await self._b.store.forget_derived(None if self._is_root else self.namespace)

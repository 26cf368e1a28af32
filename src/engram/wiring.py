"""How an engine's backends are built from its config and shared between its namespace views."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError as PydanticValidationError

from engram import registry
from engram.chunking import embed_documents
from engram.config import MemoryConfig, ProviderSpec
from engram.errors import ConfigError
from engram.interfaces import LLM, Embedder, Extractor, ListwiseReranker, Reembed, Reranker, Store
from engram.types import Vector

if TYPE_CHECKING:
    from engram.memory import AsyncMemory

DEFAULT_EMBEDDER = ProviderSpec(provider="minilm")


def default_store() -> ProviderSpec:
    """PostgreSQL when ``ENGRAM_DATABASE_URL`` is set (read when an engine is built), else SQLite."""
    return ProviderSpec(provider="postgres" if os.environ.get("ENGRAM_DATABASE_URL") else "sqlite")


@dataclass
class Backends:
    """What every namespace view of one engine shares."""

    config: MemoryConfig
    store: Store
    embedder: Embedder
    llm: LLM | None
    reranker: Reranker | None
    extractor: Extractor | None
    ready: bool = False
    lock: asyncio.Lock | None = None
    views: dict[str, AsyncMemory] = field(default_factory=dict)
    watch: asyncio.Task[None] | None = None  # closes the engine when its event loop shuts down


def build_backends(
    config: MemoryConfig | dict[str, Any] | None,
    store: Store | None,
    embedder: Embedder | None,
    llm: LLM | None,
    reranker: Reranker | None,
    extractor: Extractor | None,
) -> Backends:
    """Backends from ``config``, with any instance given directly taking the place of its config."""
    cfg = config if isinstance(config, MemoryConfig) else parse_config(config)
    return Backends(
        config=cfg,
        store=store or _build("store", cfg.store, default_store(), Store),
        embedder=embedder or _build("embedder", cfg.embedder, DEFAULT_EMBEDDER, Embedder),
        llm=llm or _build("llm", cfg.llm, None, LLM),
        reranker=reranker or _build("reranker", cfg.reranker, None, Reranker),
        extractor=extractor,
    )


async def open_store(backends: Backends, reembed: Reembed | None) -> int:
    """Open the store for the engine's embedder, or re-embed it with that embedder first (returns how
    many memories were re-embedded)."""
    embedder, store = backends.embedder, backends.store
    if reembed is None:
        await store.open(embedder.info)
        return 0
    chunk_chars = backends.config.retrieval.chunk_chars

    async def embed(texts: list[str]) -> Vector:
        return await embed_documents(embedder, texts, chunk_chars)

    try:
        return await store.reembed(embedder.info, embed, reembed)
    except BaseException:
        await store.close()  # it may have opened (pools, connections) before failing
        raise


async def close_with_loop(memory: AsyncMemory, backends: Backends) -> None:
    """Wait until the event loop shuts down (``asyncio.run`` cancels every task), then close ``memory``.

    So a program that never calls ``close()`` still releases pools and threads while its loop runs.
    """
    try:
        await asyncio.get_running_loop().create_future()  # never set
    except asyncio.CancelledError:
        if backends.watch is asyncio.current_task():  # the loop is ending, not close() being called
            await memory.close()
        raise


def parse_config(config: dict[str, Any] | None) -> MemoryConfig:
    """Validate a config dict, naming every bad field in one :class:`ConfigError`."""
    if config is not None and not isinstance(config, dict):
        raise ConfigError(f"config must be a dict or a MemoryConfig, got {type(config).__name__}")
    try:
        return MemoryConfig.model_validate(config or {})
    except PydanticValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"Invalid configuration: {problems}") from e


def _build(kind: registry.Kind, spec: ProviderSpec | None, default: ProviderSpec | None, base: type) -> Any:
    chosen = spec or default
    if chosen is None:
        return None
    return registry.create(kind, chosen.provider, chosen.config, base)


def search_models(
    backends: Backends, get_llm: Callable[[], LLM | None], rerank: bool, rewrite: bool | None
) -> tuple[Reranker | ListwiseReranker | None, LLM | None]:
    """The reranker and the query rewriter one search asked for. ``rerank=True`` uses the configured
    reranker, else the LLM as a listwise reranker; ``rewrite`` (None: ``retrieval.rewrite``) needs the
    LLM. ConfigError when what was asked for is not there."""
    cfg = backends.config.retrieval
    wants_rewrite = cfg.rewrite if rewrite is None else rewrite
    reranker: Reranker | ListwiseReranker | None = backends.reranker if rerank else None
    llm = get_llm() if wants_rewrite or (rerank and reranker is None) else None
    if rerank and reranker is None:
        if llm is None:
            raise ConfigError(
                "rerank=True needs a reranker or an LLM; configure one under 'reranker' or 'llm'",
                details={"field": "rerank"},
            )
        from engram.rerankers.llm import LLMReranker

        reranker = LLMReranker(llm, doc_chars=cfg.llm_doc_chars, prompt_chars=cfg.llm_prompt_chars)
    if wants_rewrite and llm is None:
        source = "rewrite=True" if rewrite else "retrieval.rewrite"
        raise ConfigError(
            f"{source} needs an LLM; configure one under 'llm' (or set OPENAI_API_KEY or ANTHROPIC_API_KEY)",
            details={"field": "rewrite"},
        )
    return reranker, llm if wants_rewrite else None

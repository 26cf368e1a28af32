"""Typed configuration for :class:`engram.Memory`.

``Memory.from_config`` accepts the same dict shape as mem0 (``{"llm": {"provider": ..., "config":
{...}}, "embedder": ..., "vector_store": ...}``); unknown keys are errors that name the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engram.limits import Limits


class ProviderSpec(BaseModel):
    """Which backend to use and its settings."""

    model_config = ConfigDict(extra="forbid")
    provider: str
    config: dict[str, Any] = Field(default_factory=dict)


class RetrievalConfig(BaseModel):
    """How search gathers and fuses candidates (see docs/retrieval.md)."""

    model_config = ConfigDict(extra="forbid")
    vector_weight: float = Field(0.5, ge=0)
    keyword_weight: float = Field(0.5, ge=0)
    vector_min_spread: float = Field(
        0.1, ge=0, le=1, description="cosine z-scores divide by at least this (cosine units)"
    )
    keyword_min_spread: float = Field(
        0.75,
        ge=0,
        description="BM25 z-scores divide by at least this share of the mean BM25 of the memories that match",
    )
    candidates: int = Field(100, ge=1, le=10_000, description="candidates each signal brings")
    context_prev: float = Field(
        0.3, ge=0, le=1, description="share of the previous memory's score (same session) a memory inherits"
    )
    context_next: float = Field(0.3, ge=0, le=1, description="share of the next memory's score it inherits")
    session_weight: float = Field(
        0.2, ge=0, le=1, description="bonus: this times the best score of the memory's session"
    )
    date_weight: float = Field(
        1.0, ge=0, le=2, description="bonus when the query names the month/year the memory was observed in"
    )
    session_gap_minutes: float = Field(
        30.0, ge=0, description="memories of a scope observed this close together form one session"
    )
    context_min_memories: int = Field(
        100, ge=0, description="neighbour and session context only in scopes of at least this many memories"
    )
    question_penalty: float = Field(
        1.0, ge=0, description="taken off the raw score of memories that are questions (end with '?')"
    )
    rerank_candidates: int = Field(
        50, ge=1, le=1000, description="how many fused results rerank=True reorders (at least top_k)"
    )
    llm_doc_chars: int = Field(
        300, ge=20, le=10_000, description="LLM reranking: each candidate's text is cut to this length"
    )
    llm_prompt_chars: int = Field(
        12_000, ge=1_000, le=200_000, description="LLM reranking: the candidate texts' total length"
    )
    rewrite: bool = Field(False, description="search(rewrite=None) expands queries with the LLM when true")
    rewrite_variants: int = Field(
        3, ge=1, le=8, description="query rewriting: at most this many variants (keywords + paraphrases)"
    )
    chunk_chars: int = Field(
        1000, ge=0, description="longer texts are embedded in chunks of about this size (0: never)"
    )


class InferenceConfig(BaseModel):
    """How ``add(infer=True)`` extracts, deduplicates and supersedes."""

    model_config = ConfigDict(extra="forbid")
    near_duplicate_threshold: float = Field(0.93, ge=0, le=1)
    related_memories: int = Field(10, ge=0, le=100)
    recent_messages: int = Field(10, ge=0, le=200)
    on_extraction_failure: Literal["raise", "store_raw"] = "raise"


def default_home() -> Path:
    """``$ENGRAM_HOME``, else ``~/.engram`` (read at call time, never at import)."""
    return Path(os.environ.get("ENGRAM_HOME") or Path.home() / ".engram")


class MemoryConfig(BaseModel):
    """Everything :class:`engram.AsyncMemory` needs; every field has an offline default."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    store: ProviderSpec | None = Field(None, alias="vector_store")
    embedder: ProviderSpec | None = None
    llm: ProviderSpec | None = None
    reranker: ProviderSpec | None = None
    custom_instructions: str | None = Field(None, alias="custom_fact_extraction_prompt")
    namespace: str = Field("default", min_length=1, max_length=128)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    llm_from_env: bool = Field(
        True, description="use OPENAI_API_KEY / ANTHROPIC_API_KEY when no llm is configured"
    )
    limits: Limits = Field(default_factory=Limits, description="the input contract (docs/reliability.md)")
    version: str | None = Field(None, description="accepted for mem0 compatibility; ignored")

    @model_validator(mode="before")
    @classmethod
    def _accept_mem0_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "custom_prompt" in data and "custom_instructions" not in data:
            data = dict(data)
            data["custom_instructions"] = data.pop("custom_prompt")
        if isinstance(data, dict) and "max_message_chars" in data:  # shorthand for limits.max_message_chars
            data = dict(data)
            limits = data.get("limits")
            limits = limits.model_dump() if isinstance(limits, Limits) else dict(limits or {})
            data["limits"] = {**limits, "max_message_chars": data.pop("max_message_chars")}
        return data

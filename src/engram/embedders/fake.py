"""A deterministic, dependency-free embedder for tests.

Each text becomes a bag of hashed features (lower-cased words and their character trigrams), each
feature adding a signed weight to one bucket; the sum is L2-normalised. Identical texts get identical
vectors, texts sharing words get similar ones, unrelated texts land near orthogonal (for dims >= 64).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import Field

from engram.embedders._common import build_settings, check_texts, l2_normalize
from engram.interfaces import BackendSettings, Embedder
from engram.types import EmbedderInfo, Vector

_WORD_RE = re.compile(r"\w+", re.UNICODE)
_WORD_WEIGHT = 1.0
_TRIGRAM_WEIGHT = 0.35
_EMPTY_FEATURE = "\x00empty"


@lru_cache(maxsize=65_536)
def _bucket(feature: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dim, (1.0 if (value >> 63) & 1 else -1.0)


def _features(text: str) -> list[tuple[str, float]]:
    words = _WORD_RE.findall(text.lower())
    feats: list[tuple[str, float]] = []
    for word in words:
        feats.append(("w:" + word, _WORD_WEIGHT))
        padded = f"#{word}#"
        feats.extend(("t:" + padded[i : i + 3], _TRIGRAM_WEIGHT) for i in range(len(padded) - 2))
    return feats or [(_EMPTY_FEATURE, 1.0)]


class FakeEmbedder(Embedder):
    """Hash-based test embedder: fast, deterministic across processes, no model, no network."""

    class Settings(BackendSettings):
        """Settings of the fake embedder."""

        dim: int = Field(64, ge=8, le=4096, description="vector dimension")

    def __init__(self, settings: FakeEmbedder.Settings | None = None, **overrides: object) -> None:
        self.settings = build_settings(FakeEmbedder.Settings, settings, overrides)
        self.calls = 0  # how many times embed() ran (handy to assert batching in tests)
        self.texts_embedded = 0

    @property
    def info(self) -> EmbedderInfo:
        return EmbedderInfo(name=f"fake:{self.settings.dim}", dim=self.settings.dim)

    def embed_sync(self, texts: Sequence[str]) -> Vector:
        """Embed without an event loop."""
        items = check_texts(texts)
        dim = self.settings.dim
        out = np.zeros((len(items), dim), dtype=np.float32)
        for row, text in enumerate(items):
            for feature, weight in _features(text):
                index, sign = _bucket(feature, dim)
                out[row, index] += sign * weight
        self.calls += 1
        self.texts_embedded += len(items)
        return l2_normalize(out)

    async def embed(self, texts: Sequence[str], *, kind: Literal["document", "query"] = "document") -> Vector:
        return self.embed_sync(texts)

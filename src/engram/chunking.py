"""Embedding of texts longer than the embedder's window: split into overlapping chunks, embed every
chunk (one model call for the whole batch), keep one vector per text (the normalised mean of its
chunks). Without this only the first ~256 tokens of a long message reach vector search.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from engram.interfaces import Embedder
from engram.types import Vector

_WHITESPACE_RUN = re.compile(r"\s+")


def chunks_of(text: str, size: int) -> list[str]:
    """``text`` (whitespace runs folded to one space) in pieces of about ``size`` characters, cut at
    spaces, each overlapping the previous by an eighth; one piece when it fits."""
    flat = _WHITESPACE_RUN.sub(" ", text).strip()
    if size <= 0 or len(flat) <= size:
        return [text]
    out: list[str] = []
    start, overlap = 0, size // 8
    while start < len(flat):
        end = min(len(flat), start + size)
        if end < len(flat):
            cut = flat.rfind(" ", start + size // 2, end)
            end = cut if cut > start else end
        out.append(flat[start:end])
        if end >= len(flat):
            break
        start = max(end - overlap, start + 1)
    return out


async def embed_documents(embedder: Embedder, texts: Sequence[str], chunk_chars: int) -> Vector:
    """One vector per text; long texts are embedded chunk by chunk in the same model call."""
    pieces = [chunks_of(t, chunk_chars) for t in texts]
    flat = [p for ps in pieces for p in ps]
    if len(flat) == len(texts):
        return await embedder.embed(list(texts))
    vectors = await embedder.embed(flat)
    out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
    at = 0
    for i, ps in enumerate(pieces):
        mean = vectors[at : at + len(ps)].mean(axis=0)
        norm = float(np.linalg.norm(mean))
        out[i] = mean / norm if norm > 0 else mean
        at += len(ps)
    return out

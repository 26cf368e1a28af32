"""LLM-assisted search with the ScriptedLLM double: listwise reranking and query rewriting, their
bounds, and the fallback (plain fused order plus a note) when the model fails."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from engram import AsyncMemory, Memory
from engram.embedders.fake import FakeEmbedder
from engram.errors import ConfigError, ProviderError
from engram.interfaces import BackendSettings, Reranker
from engram.rerankers.llm import LLMReranker, ranking_indices
from engram.stores.sqlite import SQLiteStore
from engram.testing import ScriptedLLM

QUESTION = "which laptop did the user buy"
ANSWER = "ok, I ordered the ThinkPad T14s Gen 5 yesterday"
TURNS = [
    "I need to buy a new laptop for work",
    "which laptop should the user buy, a light one or a big one?",
    "the user wants a laptop with a good keyboard",
    ANSWER,
    "my old laptop battery barely lasts an hour",
    "we also talked about buying a desk lamp",
]


def engine(tmp_path: Path, llm: ScriptedLLM | None, **retrieval: Any) -> AsyncMemory:
    config = {"retrieval": retrieval, "llm_from_env": False}
    return AsyncMemory(config, store=SQLiteStore(path=tmp_path / "m.db"), embedder=FakeEmbedder(), llm=llm)


@pytest.fixture
async def llm() -> ScriptedLLM:
    return ScriptedLLM()


@pytest.fixture
async def mem(tmp_path: Path, llm: ScriptedLLM) -> AsyncIterator[AsyncMemory]:
    m = engine(tmp_path, llm)
    await m.add([{"role": "user", "content": t} for t in TURNS], user_id="u", infer=False)
    yield m
    await m.close()


def candidates(prompt: str) -> dict[str, int]:
    """The numbered candidates of a rerank prompt: text -> number."""
    return {text: int(n) for n, text in re.findall(r"^\[(\d+)\] (.*)$", prompt, re.MULTILINE)}


def rank_first(text: str) -> Callable[[list[dict[str, str]]], str]:
    """A scripted reply that puts the candidate with this text first."""

    def reply(messages: list[dict[str, str]]) -> str:
        return json.dumps({"ranking": [candidates(messages[-1]["content"])[text]]})

    return reply


def texts(found: dict[str, Any]) -> list[str]:
    return [r["memory"] for r in found["results"]]


async def test_rerank_uses_the_llm_when_no_reranker_is_configured(mem: AsyncMemory, llm: ScriptedLLM) -> None:
    plain = await mem.search(QUESTION, user_id="u", top_k=3)
    assert "rerank" not in plain and not llm.calls  # off by default: no call, mem0's shape
    assert ANSWER not in texts(plain)
    llm.push(rank_first(ANSWER))
    found = await mem.search(QUESTION, user_id="u", top_k=3, rerank=True)
    assert texts(found)[0] == ANSWER
    assert found["rerank"] == {"used": "llm:scripted", "ok": True, "candidates": 6, "reordered": 1}
    assert len(llm.calls) == 1 and llm.calls[0].json_schema is not None
    assert QUESTION in llm.calls[0].prompt_text
    # the others follow in their fused order; scores stay descending in (0, 1)
    assert texts(found)[1:] == texts(plain)[:2]
    scores = [r["score"] for r in found["results"]]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)


async def test_unknown_and_repeated_numbers_are_ignored(mem: AsyncMemory, llm: ScriptedLLM) -> None:
    plain = texts(await mem.search(QUESTION, user_id="u"))
    llm.push('Sure! ```json\n{"ranking": [99, "3", 3, "[1]", 0, -2]}\n```')
    found = await mem.search(QUESTION, user_id="u", rerank=True)
    assert texts(found) == [plain[2], plain[0], plain[1], *plain[3:]]
    assert "at most 6 numbers" in llm.calls[0].messages[0]["content"]  # top_k 20, but 6 candidates
    assert found["rerank"]["ok"] is True and found["rerank"]["reordered"] == 2


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (
            ProviderError("openai:gpt answered HTTP 503", provider="openai"),
            "ProviderError: openai:gpt answered",
        ),
        ("I am sorry, I cannot rank these.", "gave an unusable answer: the answer contains no JSON"),
        ('{"ranking": [42, 43]}', "ranked none of the 6 candidates"),
        ('{"ranking": [', "ranked none of the 6 candidates"),
    ],
)
async def test_a_failed_rerank_keeps_the_fused_order_and_says_so(
    mem: AsyncMemory, llm: ScriptedLLM, reply: Any, error: str
) -> None:
    plain = await mem.search(QUESTION, user_id="u")
    llm.push(reply)
    found = await mem.search(QUESTION, user_id="u", rerank=True)
    assert found["results"] == plain["results"]
    note = found["rerank"]
    assert note["ok"] is False and note["used"] == "llm:scripted" and error in note["error"]
    assert len(llm.calls) == 1  # one call, no retry: search falls back at once


async def test_the_prompt_is_bounded_and_the_pool_is_rerank_candidates(tmp_path: Path) -> None:
    llm = ScriptedLLM()
    m = engine(tmp_path, llm, rerank_candidates=5, llm_doc_chars=150, llm_prompt_chars=1000)
    long_texts = [f"laptop note {i}: " + "the battery and keyboard matter " * 100 for i in range(12)]
    await m.add([{"role": "user", "content": t} for t in long_texts], user_id="u", infer=False)
    llm.push('{"ranking": [5, 4]}', '{"ranking": [1]}')
    found = await m.search("laptop battery", user_id="u", top_k=3, rerank=True)
    prompt = llm.calls[0].messages[-1]["content"]
    shown = candidates(prompt)
    assert sorted(shown.values()) == [1, 2, 3, 4, 5]  # a pool larger than top_k, as configured
    assert all(len(text) <= 150 and text.endswith("…") for text in shown)
    assert sum(len(text) for text in shown) <= 1000
    assert "at most 3 numbers" in llm.calls[0].messages[0]["content"]  # the answer is bounded too
    assert found["rerank"]["candidates"] == 5 and len(found["results"]) == 3
    # a top_k above the pool size widens the pool; the per-candidate cut shrinks to keep the total
    many = await m.search("laptop battery", user_id="u", top_k=10, rerank=True)
    shown = candidates(llm.calls[1].messages[-1]["content"])
    assert len(shown) == 10 and many["rerank"]["candidates"] == 10
    assert sum(len(text) for text in shown) <= 1000 and all(len(t) <= 100 for t in shown)
    await m.close()


async def test_rewrite_searches_keyword_and_paraphrase_variants(mem: AsyncMemory, llm: ScriptedLLM) -> None:
    question = "what computer was purchased"
    assert ANSWER not in texts(await mem.search(question, user_id="u", top_k=1))
    llm.push(
        json.dumps(
            {"keywords": "ThinkPad ordered", "paraphrases": ["What computer was purchased?", "T14s order"]}
        )
    )
    found = await mem.search(question, user_id="u", top_k=1, rewrite=True)
    assert texts(found) == [ANSWER]
    # the paraphrase equal to the question (but for case and punctuation) still counts once
    assert found["rewrite"] == {
        "used": "llm:scripted",
        "ok": True,
        "queries": [question, "ThinkPad ordered", "What computer was purchased?", "T14s order"],
    }
    assert len(llm.calls) == 1 and question in llm.calls[0].prompt_text
    assert 0 < found["results"][0]["score"] < 1


async def test_rewrite_variants_are_capped(tmp_path: Path) -> None:
    llm = ScriptedLLM([json.dumps({"keywords": "a b", "paraphrases": ["c", "d", "e", "f"]})])
    m = engine(tmp_path, llm, rewrite=True, rewrite_variants=2)
    await m.add("a note about c", user_id="u", infer=False)
    found = await m.search("question", user_id="u")  # retrieval.rewrite=True: on without asking
    assert found["rewrite"]["queries"] == ["question", "a b", "c"]
    await m.close()


async def test_a_failed_rewrite_searches_the_plain_query(mem: AsyncMemory, llm: ScriptedLLM) -> None:
    plain = await mem.search(QUESTION, user_id="u", explain=True)
    llm.push('{"keywords": "", "paraphrases": []}', ProviderError("timeout", provider="openai"))
    for expected in ("gave no usable query variant", "ProviderError: timeout"):
        found = await mem.search(QUESTION, user_id="u", rewrite=True, explain=True)
        assert found["results"] == plain["results"]
        assert found["rewrite"]["ok"] is False and expected in found["rewrite"]["error"]
        assert found["rewrite"]["queries"] == [QUESTION]


async def test_rewrite_and_rerank_together_make_two_calls(mem: AsyncMemory, llm: ScriptedLLM) -> None:
    llm.push(json.dumps({"keywords": "ThinkPad", "paraphrases": []}), rank_first(TURNS[4]))
    found = await mem.search(QUESTION, user_id="u", rewrite=True, rerank=True, explain=True)
    assert texts(found)[0] == TURNS[4] and found["rerank"]["ok"] and found["rewrite"]["ok"]
    assert len(llm.calls) == 2
    top = found["results"][0]["explain"]
    assert top["rerank"]["position"] == 1 and len(top["variants"]) == 2


async def test_without_an_llm_rerank_and_rewrite_are_config_errors(tmp_path: Path) -> None:
    m = engine(tmp_path, None)
    await m.add("x", user_id="u", infer=False)
    with pytest.raises(ConfigError, match="rerank=True needs a reranker or an LLM") as rerank:
        await m.search("x", user_id="u", rerank=True)
    with pytest.raises(ConfigError, match="rewrite=True needs an LLM") as rewrite:
        await m.search("x", user_id="u", rewrite=True)
    assert rerank.value.details["field"] == "rerank" and rewrite.value.details["field"] == "rewrite"
    assert "rerank" not in await m.search("x", user_id="u")
    await m.close()


async def test_an_llm_from_the_environment_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripted = ScriptedLLM(['{"ranking": [2]}'])
    monkeypatch.setattr("engram.llms.llm_from_environment", lambda: scripted)
    m = AsyncMemory(store=SQLiteStore(path=tmp_path / "e.db"), embedder=FakeEmbedder())
    await m.add([{"role": "user", "content": t} for t in ("tea notes", "tea shop")], user_id="u", infer=False)
    found = await m.search("tea", user_id="u", rerank=True)
    assert found["rerank"]["used"] == "llm:scripted" and found["rerank"]["reordered"] == 1
    await m.close()


class Alphabetical(Reranker):
    Settings = BackendSettings
    name: ClassVar[str] = "alphabetical"

    async def rerank(self, query: str, documents: Sequence[str]) -> list[float]:
        order = sorted(documents)
        return [float(len(documents) - order.index(d)) for d in documents]


async def test_a_configured_reranker_wins_over_the_llm(tmp_path: Path) -> None:
    llm = ScriptedLLM()  # no replies: any call would fail the test
    m = AsyncMemory(
        store=SQLiteStore(path=tmp_path / "a.db"), embedder=FakeEmbedder(), llm=llm, reranker=Alphabetical()
    )
    await m.add([{"role": "user", "content": t} for t in TURNS], user_id="u", infer=False)
    found = await m.search(QUESTION, user_id="u", rerank=True)
    assert texts(found) == sorted(TURNS) and found["rerank"]["used"] == "alphabetical"
    assert not llm.calls
    await m.close()


def test_the_sync_facade_passes_both_options(tmp_path: Path) -> None:
    llm = ScriptedLLM([json.dumps({"keywords": "ThinkPad", "paraphrases": []}), rank_first(ANSWER)])
    m = Memory(store=SQLiteStore(path=tmp_path / "s.db"), embedder=FakeEmbedder(), llm=llm)
    m.add([{"role": "user", "content": t} for t in TURNS], user_id="u", infer=False)
    found = m.search(QUESTION, user_id="u", top_k=2, rerank=True, rewrite=True)
    assert texts(found)[0] == ANSWER and found["rerank"]["ok"] and found["rewrite"]["ok"]
    m.close()


@pytest.mark.parametrize(
    ("values", "count", "expected"),
    [
        ([{"ranking": [2, 1]}], 3, [1, 0]),
        ([[3, "2", "c1"]], 3, [2, 1, 0]),
        ([{"order": ["#2", 2, True, None, 7]}], 3, [1]),
        ([{"ranking": "nothing"}], 3, []),
    ],
)
def test_ranking_indices_read_what_models_write(values: list[Any], count: int, expected: list[int]) -> None:
    assert ranking_indices(values, count) == expected


def test_the_reranker_names_its_model() -> None:
    assert LLMReranker(ScriptedLLM(name="ollama:qwen3")).name == "llm:ollama:qwen3"

"""LLMExtractor: what the prompt contains, how ids map back, chunking of long inputs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from engram.extract.llm import LLMExtractor
from engram.interfaces import ExtractionRequest
from engram.testing import ScriptedLLM
from engram.types import MemoryRecord, Scope, StoredMessage

NOW = datetime(2024, 5, 10, 14, 3, tzinfo=UTC)
SCOPE = Scope(user_id="alice")


def msg(mid: str, role: str, content: str, name: str | None = None) -> StoredMessage:
    return StoredMessage(mid, SCOPE, role, content, name, NOW, NOW)


def record(rid: str, text: str) -> MemoryRecord:
    return MemoryRecord(rid, text, "h", SCOPE, None, "user", {}, NOW, None, NOW)


def reply(*facts: dict[str, object]) -> str:
    return json.dumps({"facts": list(facts)})


def request(**kw: object) -> ExtractionRequest:
    base: dict[str, object] = {
        "messages": [
            msg("id-u", "user", "I moved to Madrid last week."),
            msg("id-a", "assistant", "Welcome to Spain!", "Robo"),
        ],
        "recent": [msg("id-old", "user", "My cat is called Miso.")],
        "related": [
            record("mem-berlin", "alice lives in Berlin"),
            record("mem-cat", "alice has a cat named Miso"),
        ],
        "observed_at": NOW,
    }
    base.update(kw)
    return ExtractionRequest(**base)  # type: ignore[arg-type]


async def test_prompt_contents() -> None:
    llm = ScriptedLLM([reply()])
    await LLMExtractor(llm).extract(request(custom_instructions="Ignore pets.", prompt="Focus on housing."))
    (call,) = llm.calls
    system, user = call.messages
    assert system["role"] == "system" and user["role"] == "user"
    assert "Ignore pets." in system["content"] and "Focus on housing." in system["content"]
    assert system["content"].index("Ignore pets.") < system["content"].index("Focus on housing.")
    assert "likes ramen" in system["content"]  # the "both can be true" rule is spelled out
    content = user["content"]
    assert "Observation date: 2024-05-10 (Friday) 14:03 UTC" in content
    assert "- r1: alice lives in Berlin [2024-05-10]" in content
    assert "- r2: alice has a cat named Miso" in content
    assert "[alice, user]: My cat is called Miso." in content
    assert "m1 [alice, user]: I moved to Madrid last week." in content
    assert "m2 [Robo, assistant]: Welcome to Spain!" in content
    assert content.index("Earlier messages") < content.index("NEW messages")
    assert call.temperature == 0.0


async def test_ids_map_back_and_unknown_ids_are_dropped() -> None:
    llm = ScriptedLLM(
        [
            reply(
                {
                    "text": "alice moved to Madrid in early May 2024",
                    "source_message_ids": ["m1", "m7"],
                    "attributed_to": "alice",
                    "supersedes": ["r1", "r9", "mem-cat"],
                },
                {
                    "text": "Robo welcomed alice to Spain",
                    "source_message_ids": [],
                    "attributed_to": "Robo",
                    "supersedes": [],
                },
                {"text": "alice relocated", "source_message_ids": ["id-u"], "attributed_to": "someone else"},
            )
        ]
    )
    result = await LLMExtractor(llm).extract(request())
    moved, welcome, relocated = result.facts
    assert moved.source_message_ids == ["id-u"]
    assert moved.supersedes == ["mem-berlin", "mem-cat"]  # the model's own ids and real ids both work
    assert (moved.role, moved.actor_id) == ("user", None)
    assert welcome.source_message_ids == ["id-a"]  # no ids given: the attributed speaker's messages
    assert (welcome.role, welcome.actor_id) == ("assistant", "Robo")
    assert relocated.source_message_ids == ["id-u"]
    assert result.extractor == "scripted"
    assert result.raw_output is not None and "Madrid" in result.raw_output


async def test_system_and_empty_messages_are_not_sent() -> None:
    llm = ScriptedLLM([reply()])
    await LLMExtractor(llm).extract(
        request(
            messages=[msg("s", "system", "You are a bot"), msg("e", "user", "  "), msg("u", "user", "Hi")]
        )
    )
    content = llm.calls[0].messages[1]["content"]
    assert "You are a bot" not in content
    assert "m1 [alice, user]: Hi" in content


async def test_long_input_is_split_into_a_few_calls() -> None:
    messages = [msg(f"id{i}", "user", f"Fact number {i}. " * 10) for i in range(6)]  # ~170 chars each
    llm = ScriptedLLM([reply({"text": f"chunk {i}", "source_message_ids": []}) for i in range(10)])
    result = await LLMExtractor(llm, max_input_chars=400).extract(
        request(messages=messages, recent=[], related=[])
    )
    assert 2 <= len(llm.calls) <= 4
    sent = "\n".join(c.messages[1]["content"] for c in llm.calls)
    for i in range(6):
        assert f"m{i + 1} [alice, user]: Fact number {i}." in sent
    assert [f.text for f in result.facts] == [f"chunk {i}" for i in range(len(llm.calls))]


async def test_one_huge_message_is_split_at_sentences() -> None:
    text = " ".join(f"Sentence {i} is here." for i in range(200))  # ~4,000 chars
    llm = ScriptedLLM([reply() for _ in range(20)])
    await LLMExtractor(llm, max_input_chars=1000).extract(
        request(messages=[msg("big", "user", text)], recent=[], related=[])
    )
    assert 4 <= len(llm.calls) <= 6
    for call in llm.calls:
        assert "m1 [alice, user]: Sentence" in call.messages[1]["content"]


async def test_small_input_is_one_call() -> None:
    llm = ScriptedLLM([reply()])
    await LLMExtractor(llm).extract(request())
    assert len(llm.calls) == 1

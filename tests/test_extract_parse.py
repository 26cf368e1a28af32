"""Tolerant parsing of model output: a table of real-world malformed answers, plus the retry path."""

from __future__ import annotations

import json

import pytest

from engram.errors import ExtractionError
from engram.extract.parse import OutputProblemError, complete_facts, parse_facts
from engram.testing import ScriptedLLM

GOOD = (
    '{"facts": [{"text": "Alice loves sci-fi movies", "source_message_ids": ["m1"], '
    '"attributed_to": "Alice", "supersedes": []}]}'
)

# (label, raw model output, expected fact texts) - each repaired without asking the model again
REPAIRABLE: list[tuple[str, str, list[str]]] = [
    ("plain valid", GOOD, ["Alice loves sci-fi movies"]),
    ("json code fence", f"```json\n{GOOD}\n```", ["Alice loves sci-fi movies"]),
    ("bare code fence", f"```\n{GOOD}\n```", ["Alice loves sci-fi movies"]),
    (
        "prose around",
        f"Sure! Here are the facts I found:\n{GOOD}\nLet me know if you need more.",
        ["Alice loves sci-fi movies"],
    ),
    (
        "trailing commas",
        '{"facts": [{"text": "Alice is vegan", "source_message_ids": ["m1",],},],}',
        ["Alice is vegan"],
    ),
    (
        "single quotes",
        "{'facts': [{'text': 'Bob plays chess', 'source_message_ids': ['m2']}]}",
        ["Bob plays chess"],
    ),
    ("unquoted keys", '{facts: [{text: "Alice has a dog named Rex"}]}', ["Alice has a dog named Rex"]),
    (
        "truncated array, last fact cut mid-sentence",
        '{"facts": [{"text": "Alice lives in Berlin", "source_message_ids": ["m1"]}, '
        '{"text": "Alice works as a nur',
        ["Alice lives in Berlin"],
    ),
    (
        "truncated after a complete fact",
        '{"facts": [{"text": "Alice lives in Berlin", "source_message_ids": ["m1"]}, ',
        ["Alice lives in Berlin"],
    ),
    (
        "think block of a reasoning model",
        '<think>The user says {something}. I should output {"facts": []}? No, she likes tea.</think>\n'
        '{"facts": [{"text": "Alice likes tea"}]}',
        ["Alice likes tea"],
    ),
    (
        "orphan closing think tag",
        'okay so the user...</think>{"facts": ["Alice likes tea"]}',
        ["Alice likes tea"],
    ),
    (
        "mem0-style list of strings",
        '{"facts": ["Alice is vegan", "Alice lives in Lyon"]}',
        ["Alice is vegan", "Alice lives in Lyon"],
    ),
    ("bare array", '["Alice is vegan"]', ["Alice is vegan"]),
    ("other key name", '{"memories": [{"memory": "Alice is vegan"}]}', ["Alice is vegan"]),
    (
        "one object per line",
        '{"text": "Alice is vegan"}\n{"text": "Alice likes tea"}',
        ["Alice is vegan", "Alice likes tea"],
    ),
    (
        "comments and python literals",
        '{"facts": [ // found one\n {"text": "Alice is vegan", "supersedes": None}]}',
        ["Alice is vegan"],
    ),
    (
        "smart text with escaped quotes",
        '{"facts": [{"text": "Alice said \\"hi\\" to Bob"}]}',
        ['Alice said "hi" to Bob'],
    ),
    ("honest empty answer", '{"facts": []}', []),
    ("honest empty in a fence", '```json\n{"facts": []}\n```', []),
    ("facts null", '{"facts": null}', []),
]

# outputs that cannot be used: parse_facts refuses them (never "zero facts")
UNUSABLE: list[tuple[str, str]] = [
    ("empty string", ""),
    ("whitespace", "   \n "),
    ("prose only", "I'm sorry, but I can't help with that request."),
    ("think block only", "<think>Let me consider what the user said about movies and"),
    ("wrong shape", '{"answer": "Alice likes tea"}'),
    ("facts not a list", '{"facts": 42}'),
    ("items without text", '{"facts": [{"source_message_ids": ["m1"]}, {"supersedes": []}]}'),
    ("cut before the first fact ends", '{"facts": [{"text": "Alice lives in Ber'),
    ("a number", "42"),
]


@pytest.mark.parametrize(("label", "raw", "expected"), REPAIRABLE, ids=[r[0] for r in REPAIRABLE])
def test_repairable_outputs(label: str, raw: str, expected: list[str]) -> None:
    parsed = parse_facts(raw)
    assert [f.text for f in parsed.facts] == expected


@pytest.mark.parametrize(("label", "raw"), UNUSABLE, ids=[r[0] for r in UNUSABLE])
def test_unusable_outputs_are_refused(label: str, raw: str) -> None:
    with pytest.raises(OutputProblemError):
        parse_facts(raw)


def test_fields_are_coerced() -> None:
    raw = (
        '{"facts": [{"fact": "Alice moved to Madrid", "sources": "m1, m2", "speaker": "Alice", '
        '"replaces": "r1"}]}'
    )
    (fact,) = parse_facts(raw).facts
    assert fact.text == "Alice moved to Madrid"
    assert fact.source_message_ids == ["m1", "m2"]
    assert fact.attributed_to == "Alice"
    assert fact.supersedes == ["r1"]


def test_table_is_large_enough() -> None:
    assert len(REPAIRABLE) + len(UNUSABLE) >= 10


@pytest.mark.parametrize(("label", "raw"), UNUSABLE, ids=[r[0] for r in UNUSABLE])
async def test_unusable_output_gets_one_corrective_retry(label: str, raw: str) -> None:
    llm = ScriptedLLM([raw, GOOD])
    parsed, final = await complete_facts(llm, [{"role": "user", "content": "extract"}])
    assert [f.text for f in parsed.facts] == ["Alice loves sci-fi movies"]
    assert final == GOOD
    assert len(llm.calls) == 2
    retry = llm.calls[1].messages
    assert retry[-2] == {"role": "assistant", "content": raw}
    assert "could not be used" in retry[-1]["content"]
    assert parsed.notes and "corrective retry" in parsed.notes[0]


@pytest.mark.parametrize(("label", "raw"), UNUSABLE, ids=[r[0] for r in UNUSABLE])
async def test_unusable_twice_raises_with_raw_output(label: str, raw: str) -> None:
    llm = ScriptedLLM([raw, "still not JSON"])
    with pytest.raises(ExtractionError) as info:
        await complete_facts(llm, [{"role": "user", "content": "extract"}])
    assert "still not JSON" in info.value.raw_output
    assert raw in info.value.raw_output
    assert "raw model output" in str(info.value)


async def test_schema_is_passed_to_the_llm() -> None:
    llm = ScriptedLLM([GOOD])
    await complete_facts(llm, [{"role": "user", "content": "x"}])
    schema = llm.calls[0].json_schema
    assert schema is not None and schema["required"] == ["facts"]
    json.dumps(schema)  # serialisable

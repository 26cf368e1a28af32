"""Tolerant parsing of a model's extraction output, with one corrective retry.

Small local models wrap JSON in prose or code fences, leave trailing commas, use single quotes, get
cut off mid-array or think aloud in ``<think>`` blocks. :func:`parse_facts` repairs all of that (with
``json-repair``) and validates the result; :func:`complete_facts` asks the model once more, saying
what was wrong, before giving up with :class:`~engram.errors.ExtractionError` and the raw output.
An honest empty answer (``{"facts": []}``) is fine; unusable output never becomes "no facts".
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from engram.errors import ExtractionError, ProviderError
from engram.interfaces import LLM

#: The JSON schema the extractor asks for (strict-mode compatible for OpenAI structured outputs).
EXTRACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "source_message_ids": {"type": "array", "items": {"type": "string"}},
                    "attributed_to": {"type": "string"},
                    "supersedes": {"type": "array", "items": {"type": "string"}},
                    "entities": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "type": {"type": "string"},
                                "aliases": {"type": "array", "items": {"type": "string"}},
                            },
                            "required": ["name", "type", "aliases"],
                            "additionalProperties": False,
                        },
                    },
                },
                "required": ["text", "source_message_ids", "attributed_to", "supersedes", "entities"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["facts"],
    "additionalProperties": False,
}

_TEXT_KEYS = ("text", "fact", "memory", "content", "statement", "value")
_SOURCE_KEYS = ("source_message_ids", "source_ids", "message_ids", "sources", "source", "source_message_id")
_ATTR_KEYS = ("attributed_to", "speaker", "attribution", "actor", "by", "about")
_SUPERSEDE_KEYS = ("supersedes", "replaces", "supersedes_ids", "updates", "superseded_ids", "supersede")
_LIST_KEYS = ("facts", "memories", "memory", "items", "results", "extracted_facts", "new_facts")
_EMPTY_WORDS = {"", "none", "null", "n/a", "na", "[]", "nothing"}


def _as_str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value).strip()
        return [t.strip() for t in re.split(r"[,\s]+", text) if t.strip()] if text else []
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if isinstance(v, str | int | float) and str(v).strip()]
    return []


class FactOut(BaseModel):
    """One fact as the model wrote it (field spellings that models invent are accepted)."""

    model_config = ConfigDict(extra="ignore")
    text: str = Field(min_length=1)
    source_message_ids: list[str] = Field(default_factory=list)
    attributed_to: str | None = None
    supersedes: list[str] = Field(default_factory=list)
    entities: list[Any] | None = None  # [{"name", "type", "aliases"}] (see engram.entities)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"text": data}
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] = {}
        for target, keys in (
            ("text", _TEXT_KEYS),
            ("source_message_ids", _SOURCE_KEYS),
            ("attributed_to", _ATTR_KEYS),
            ("supersedes", _SUPERSEDE_KEYS),
        ):
            for key in keys:
                if data.get(key) not in (None, ""):
                    out[target] = data[key]
                    break
        if isinstance(data.get("entities"), list):
            out["entities"] = data["entities"]
        return out

    @field_validator("text", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("source_message_ids", "supersedes", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> list[str]:
        return _as_str_list(value)

    @field_validator("attributed_to", mode="before")
    @classmethod
    def _attr(cls, value: Any) -> str | None:
        if isinstance(value, str):
            return value.strip() or None
        return None


@dataclass(slots=True)
class ParsedFacts:
    """What :func:`parse_facts` made of one model answer."""

    facts: list[FactOut]
    repaired: bool = False
    notes: list[str] = field(default_factory=list)


class OutputProblemError(Exception):
    """The model's answer could not be used; the message says why (it is shown to the model)."""


_THINK_BLOCK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN = re.compile(r"<(think|thinking|reasoning)>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(think|thinking|reasoning)>", re.IGNORECASE)
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_FACTS_START = re.compile(r"[\{\[]\s*[\"']?(?:facts|memories)[\"']?\s*:", re.IGNORECASE)


def _strip_reasoning(text: str) -> str:
    text = _THINK_BLOCK.sub("", text)
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:  # an orphan closing tag: everything before it was reasoning
        text = text[closes[-1].end() :]
    opened = _THINK_OPEN.search(text)
    if opened:  # reasoning that never closed: keep only what looks like the answer
        found = _FACTS_START.search(text, opened.end())
        text = text[: opened.start()] + (text[found.start() :] if found else "")
    return text.strip()


def _json_region(text: str) -> str:
    for match in _FENCE.finditer(text):
        body = match.group(1)
        if "{" in body or "[" in body:
            text = body
            break
    found = _FACTS_START.search(text)
    if found:
        return text[found.start() :].strip()
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    return text[min(starts) :].strip() if starts else ""


def _scan(text: str) -> tuple[list[str], bool]:
    """Open brackets left at the end of ``text`` and whether it ends inside a string."""
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for ch in text:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "{[":
            stack.append(ch)
        elif ch in "}]" and stack:
            stack.pop()
            if not stack:
                return [], False
    return stack, quote is not None


def _strict_values(region: str) -> list[Any] | None:
    """Every top-level JSON value in ``region`` when it is valid JSON (one or several), else None."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    pos = 0
    while pos < len(region):
        try:
            value, end = decoder.raw_decode(region, pos)
        except json.JSONDecodeError:
            return values or None
        values.append(value)
        rest = region[end:].lstrip()
        if not rest.startswith(("{", "[")):
            return values
        pos = len(region) - len(rest)
    return values or None


def _facts_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for key in _LIST_KEYS:
            if key in value:
                inner = value[key]
                if inner is None:
                    return []
                if isinstance(inner, str):
                    return [] if inner.strip().lower() in _EMPTY_WORDS else [inner]
                if isinstance(inner, dict):
                    return [inner]
                if isinstance(inner, list):
                    return inner
                raise OutputProblemError(f'"{key}" must be a list, got {type(inner).__name__}')
        if any(k in value for k in _TEXT_KEYS):
            return [value]
        keys = ", ".join(sorted(map(str, value))) or "none"
        raise OutputProblemError(f'the JSON object has no "facts" list (its keys: {keys})')
    raise OutputProblemError(f'expected a JSON object with a "facts" list, got {type(value).__name__}')


@dataclass(slots=True)
class JsonAnswer:
    """The JSON value(s) found in one model answer, and how much repair that took."""

    values: list[Any]
    region: str  # the part of the answer that held the JSON
    repaired: bool = False
    open_brackets: list[str] = field(default_factory=list)  # left open where the answer was cut off
    in_string: bool = False  # the answer was cut off inside a string
    notes: list[str] = field(default_factory=list)


def parse_json_answer(raw: str) -> JsonAnswer:
    """The JSON in a model answer: reasoning blocks, prose and code fences are skipped and damaged JSON
    is repaired (``json-repair``); OutputProblemError when there is no usable JSON at all.

    The one JSON-repair path of Engram: extraction, LLM reranking and query rewriting all use it.
    """
    if not raw or not raw.strip():
        raise OutputProblemError("the answer was empty")
    region = _json_region(_strip_reasoning(raw))
    if not region:
        raise OutputProblemError("the answer contains no JSON object")
    values = _strict_values(region)
    if values is not None:
        return JsonAnswer(values, region)
    import json_repair

    stack, in_string = _scan(region)
    notes = ["the answer was cut off; closed it"] if stack else []
    try:
        values = [json_repair.loads(region)]
    except Exception as e:  # json-repair gives up on some inputs
        raise OutputProblemError(f"the JSON could not be repaired ({e})") from e
    if values == [""] or values == [None]:
        raise OutputProblemError("the answer contains no parsable JSON object")
    return JsonAnswer(values, region, True, stack, in_string, notes)


def parse_facts(raw: str) -> ParsedFacts:
    """Turn one model answer into facts, repairing common damage; OutputProblemError if unusable."""
    answer = parse_json_answer(raw)
    values, region, notes = answer.values, answer.region, list(answer.notes)
    list_depth = 1 if region.startswith("[") else 2
    stack = answer.open_brackets
    truncated_inside_item = bool(stack) and (len(stack) > list_depth or answer.in_string)
    items: list[Any] = []
    for value in values:
        items.extend(_facts_list(value))
    if truncated_inside_item and items:
        last = items[-1]
        text = (
            last
            if isinstance(last, str)
            else next(
                (last.get(k) for k in _TEXT_KEYS if isinstance(last, dict) and isinstance(last.get(k), str)),
                None,
            )
        )
        complete = isinstance(text, str) and (
            json.dumps(text, ensure_ascii=False) in region or f"'{text}'" in region
        )
        if not complete:
            items.pop()
            notes.append("dropped the last fact, which was cut off mid-way")
    facts: list[FactOut] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        try:
            facts.append(FactOut.model_validate(item))
        except PydanticValidationError:
            problems.append(f"facts[{i}] has no text")
    if items and not facts:
        raise OutputProblemError("no fact had a usable text: " + "; ".join(problems[:5]))
    if not facts and truncated_inside_item:
        raise OutputProblemError("the answer was cut off before the first complete fact")
    notes.extend(problems)
    return ParsedFacts(facts, answer.repaired, notes)


def correction_message(problem: str) -> str:
    """The follow-up user message of the corrective retry."""
    return (
        f"Your previous answer could not be used: {problem}. Answer again with only one JSON object of "
        'the form {"facts": [{"text": "...", "source_message_ids": ["m1"], "attributed_to": "...", '
        '"supersedes": []}]} - no prose, no code fences, no comments. If there is nothing worth '
        'remembering, answer {"facts": []}.'
    )


async def complete_facts(
    llm: LLM,
    messages: Sequence[dict[str, str]],
    *,
    schema: dict[str, Any] | None = None,
    temperature: float | None = 0.0,
) -> tuple[ParsedFacts, str]:
    """Ask ``llm`` for facts; on unusable output retry once with a correction, then ExtractionError."""
    chat = [dict(m) for m in messages]
    raw = await llm.complete(chat, json_schema=schema or EXTRACTION_SCHEMA, temperature=temperature)
    try:
        return parse_facts(raw), raw
    except OutputProblemError as first:
        problem = str(first)
    retry = [
        *chat,
        {"role": "assistant", "content": raw},
        {"role": "user", "content": correction_message(problem)},
    ]
    second = await llm.complete(retry, json_schema=schema or EXTRACTION_SCHEMA, temperature=temperature)
    try:
        parsed = parse_facts(second)
    except OutputProblemError as e:
        raise ExtractionError(
            f"{llm.name} gave unusable extraction output twice (first: {problem}; after a corrective "
            f"retry: {e})",
            raw_output=f"{raw}\n--- after the corrective retry ---\n{second}",
        ) from e
    parsed.notes.insert(0, f"first answer unusable ({problem}); the corrective retry worked")
    return parsed, second


async def complete_json(
    llm: LLM, messages: Sequence[dict[str, str]], *, schema: dict[str, Any], temperature: float | None = 0.0
) -> JsonAnswer:
    """One call to ``llm`` for a JSON answer (repaired like extraction output); a ProviderError that
    names the problem when the answer holds no usable JSON. Used by search's LLM helpers, which fall
    back instead of retrying: one call each keeps search fast."""
    raw = await llm.complete([dict(m) for m in messages], json_schema=schema, temperature=temperature)
    try:
        return parse_json_answer(raw)
    except OutputProblemError as e:
        raise ProviderError(
            f"{llm.name} gave an unusable answer: {e}", provider=llm.name, details={"raw_output": raw[:2000]}
        ) from e

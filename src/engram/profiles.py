"""User profiles and summaries: a short structured picture of a user, built from current memories.

A profile follows a schema (a JSON Schema object whose properties are the sections). With an LLM
the model writes each section from the memories; offline, every memory is put in the section its
wording points to (diet and allergies under ``constraints``, "loves" and "not a fan of" under
``preferences``...). A stored profile remembers a fingerprint of the memories it was built from,
so a read can tell when it went stale. Summaries render the same grouping as readable text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from engram.entities import extract_entities
from engram.errors import ValidationError
from engram.interfaces import LLM
from engram.types import MemoryRecord


def _sections(**descriptions: str) -> dict[str, Any]:
    """A profile schema: one array-of-strings property per section, described."""
    properties = {
        name: {"type": "array", "items": {"type": "string"}, "description": text}
        for name, text in descriptions.items()
    }
    return {"type": "object", "properties": properties}


DEFAULT_SCHEMA: dict[str, Any] = _sections(
    identity="Who the user is: name, age, home, work, studies, languages",
    preferences="Likes, dislikes, tastes and favourite things",
    constraints="Diet, allergies, health, budget and other limits to respect",
    relationships="Family, friends, colleagues and pets, with their names",
    goals="Longer-term goals, ambitions and things the user is learning",
    recent_plans="Upcoming plans, trips, appointments and events",
)
_RULES: list[tuple[str, re.Pattern[str]]] = [
    (
        "constraints",
        re.compile(
            r"\b(?:allerg\w*|vegetarian|vegan|pescatarian|gluten|lactose|dairy[- ]free|kosher|halal|diet\w*|"
            r"intoleran\w*|(?:can't|cannot|can not|doesn't|does not|don't|never) (?:eat|drink)s?|avoids?|"
            r"diabet\w*|pregnan\w*|wheelchair|budget|sober|alcohol|medication|asthma|celiac|coeliac)\b",
            re.I,
        ),
    ),
    (
        "recent_plans",
        re.compile(
            r"\b(?:plan\w*|going to|will|tonight|tomorrow|next (?:week|month|year|weekend)|"
            r"this (?:week|weekend)|trip|flight|flying|appointment|scheduled?|booked|upcoming|"
            r"on \d{4}-\d{2}-\d{2}|soon|reservation)\b",
            re.I,
        ),
    ),
    (
        "goals",
        re.compile(
            r"\b(?:goals?|wants? to (?:become|be|learn|get|run|lose|build|start)|hopes? to|dreams? of|"
            r"aims? to|aspires?|learning|training for|saving (?:up )?for|trying to|working towards?)\b",
            re.I,
        ),
    ),
    (
        "preferences",
        re.compile(
            r"\b(?:loves?|likes?|enjoys?|prefers?|preferred|fan of|favou?rite|hates?|dislikes?|can't stand|"
            r"into|adores?|passionate|not a (?:big )?fan|rather|fond of|tastes?)\b",
            re.I,
        ),
    ),
    (
        "identity",
        re.compile(
            r"\b(?:name is|named|lives?|living|lived|moved|from|works?|working|job|born|years old|age[ds]?|"
            r"studies|studying|student|speaks?|married|single|is an? \w+|profession|engineer|teacher|"
            r"doctor|nurse|developer|designer)\b",
            re.I,
        ),
    ),
]
_RELATION = re.compile(
    r"\b(?:daughter|son|wife|husband|partner|boyfriend|girlfriend|mother|mom|mum|father|dad|sister|"
    r"brother|friend|boss|colleague|coworker|grand\w+|aunt|uncle|cousin|niece|nephew|roommate|"
    r"neighbou?r|dog|cat|puppy|kitten|pet|kids?|children|family)\b",
    re.I,
)
_WORDS = re.compile(r"[a-z]{4,}")
MAX_PROFILE_MEMORIES = 500
PROFILE_PROMPT = """\
You write a user's profile for an AI assistant from what it remembers about them. Use only the \
memories given; do not invent anything. For every section of the schema write short third-person \
statements (at most eight per section, most important first); leave a section empty when nothing \
fits. Prefer the newest memory when two disagree.
{instructions}
Schema (section: what belongs in it):
{sections}

Memories (newest first):
{memories}

Answer with JSON only: {{"profile": {{"<section>": ["...", ...], ...}}}}."""


def check_schema(schema: Any) -> dict[str, Any]:
    """A profile schema: a JSON Schema object whose properties each have a description."""
    if (
        not isinstance(schema, dict)
        or not isinstance(schema.get("properties"), dict)
        or not schema["properties"]
    ):
        raise ValidationError("schema must be a JSON Schema object with 'properties'", field="schema")
    for name, spec in schema["properties"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("description"), str):
            raise ValidationError(f"schema property {name!r} needs a description", field=f"schema.{name}")
    return schema


def fingerprint(records: Sequence[MemoryRecord]) -> str:
    """What a profile was built from: changes whenever a memory is added, changed or removed."""
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: r.id):
        digest.update(f"{record.id}:{record.hash}\n".encode())
    return digest.hexdigest()


def section_of(text: str, schema: dict[str, Any]) -> str | None:
    """The schema section a memory belongs in, by its wording (None: no section fits)."""
    sections = list(schema["properties"])
    if "relationships" in sections and (
        _RELATION.search(text) or any(m.type in ("person", "pet") for m in extract_entities(text))
    ):
        return "relationships"
    for name, pattern in _RULES:
        if name in sections and pattern.search(text):
            return name
    lowered = text.lower()
    for name, spec in schema["properties"].items():
        words = set(_WORDS.findall(f"{name.replace('_', ' ')} {spec.get('description', '')}".lower()))
        if any(word[: max(4, len(word) - 3)] in lowered for word in words):  # "allergies" ~ "allergic"
            return str(name)
    return None


def group_offline(texts: Sequence[str], schema: dict[str, Any]) -> dict[str, list[str]]:
    """Every memory (newest first) in the section its wording points to; unplaced ones are left out."""
    profile: dict[str, list[str]] = {name: [] for name in schema["properties"]}
    for text in texts:
        section = section_of(text, schema)
        if section is not None and text not in profile[section]:
            profile[section].append(text)
    return profile


async def group_with_llm(
    llm: LLM, records: Sequence[MemoryRecord], schema: dict[str, Any], instructions: str | None
) -> dict[str, list[str]]:
    """The model's profile; raises ValueError when its answer is unusable."""
    import json_repair

    sections = "\n".join(
        f"- {name}: {spec.get('description', '')}" for name, spec in schema["properties"].items()
    )
    prompt = PROFILE_PROMPT.format(
        instructions=f"Also: {instructions}" if instructions else "",
        sections=sections,
        memories="\n".join(f"- {r.text}" for r in records),
    )
    raw = await llm.complete([{"role": "user", "content": prompt}], temperature=0)
    parsed = json_repair.loads(raw)
    body = parsed.get("profile", parsed) if isinstance(parsed, dict) else None
    if not isinstance(body, dict):
        raise ValueError("the model did not answer with a profile object")
    profile: dict[str, list[str]] = {}
    for name in schema["properties"]:
        value = body.get(name, [])
        items = value if isinstance(value, list) else [value]
        profile[name] = [str(v).strip() for v in items if isinstance(v, str | int | float) and str(v).strip()]
    return profile


async def build_profile(
    user_id: str,
    records: Sequence[MemoryRecord],
    *,
    schema: dict[str, Any] | None,
    instructions: str | None,
    llm: LLM | None,
    generation: int,
) -> dict[str, Any]:
    """The stored body of a freshly built profile (``profile`` plus how and from what it was built)."""
    chosen = schema or DEFAULT_SCHEMA
    used = list(records)[:MAX_PROFILE_MEMORIES]
    notes: list[str] = []
    builder = "offline"
    profile = group_offline([r.text for r in used], chosen)
    if llm is not None:
        try:
            profile = await group_with_llm(llm, used, chosen, instructions)
            builder = llm.name
        except Exception as e:  # the offline grouping stands in; the note says why
            notes.append(f"the LLM profile failed ({type(e).__name__}: {e}); built offline instead")
    return {
        "user_id": user_id,
        "profile": profile,
        "memory_ids": [r.id for r in used],
        "fingerprint": fingerprint(records),
        "built_at": datetime.now(UTC).isoformat(),
        "builder": builder,
        "generation_count": generation,
        "notes": notes,
    }


def render_summary(grouped: dict[str, list[str]], leftovers: Sequence[str]) -> str:
    """Readable text: one paragraph per non-empty section, then what fitted none."""
    sections = [*grouped.items(), ("other", list(leftovers))]
    return "\n".join(
        f"{name.replace('_', ' ').capitalize()}: " + "; ".join(i.rstrip(" .") for i in items) + "."
        for name, items in sections
        if items
    )


async def summarize(texts: Sequence[str], llm: LLM | None) -> tuple[str, str]:
    """(summary text, what wrote it) for memory texts, newest first."""
    if llm is not None:
        lines = "\n".join(f"- {t}" for t in texts[:MAX_PROFILE_MEMORIES])
        prompt = (
            "Summarise these memories of an AI assistant in one short, readable paragraph. Use only what "
            f"they say.\n\nMemories (newest first):\n{lines}\n\nAnswer with the paragraph only."
        )
        text = (await llm.complete([{"role": "user", "content": prompt}], temperature=0)).strip()
        if text:
            return text, llm.name
    grouped = group_offline(texts, DEFAULT_SCHEMA)
    placed = {t for items in grouped.values() for t in items}
    leftovers = list(dict.fromkeys(t for t in texts if t not in placed))
    return render_summary(grouped, leftovers), "offline"


def profile_view(user_id: str, body: dict[str, Any] | None, status: str, *, stale: bool) -> dict[str, Any]:
    """What :meth:`AsyncMemory.profile` answers for a stored body (or for none)."""
    body = body or {}
    return {
        "user_id": user_id,
        "status": status,
        "profile": body.get("profile", {}),
        "stale": stale,
        "memory_ids": body.get("memory_ids", []),
        "built_at": body.get("built_at"),
        "builder": body.get("builder"),
        "generation_count": body.get("generation_count", 0),
        "notes": body.get("notes", []),
    }

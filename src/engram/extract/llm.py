"""LLMExtractor: one model call per add turns new messages into short, self-contained facts.

The prompt gives the model the new messages (with short ids and speaker names), recent messages of
the same scope as context, the most related existing memories (with short ids, so it can say which
ones a new fact replaces) and the observation date (to resolve "I", "my", "next month").
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from engram.entities import mentions_from_json
from engram.extract.parse import EXTRACTION_SCHEMA, FactOut, complete_facts
from engram.extract.speakers import speaker_name
from engram.interfaces import LLM, ExtractedFact, ExtractionRequest, ExtractionResult, Extractor
from engram.types import StoredMessage

logger = logging.getLogger("engram.extract")
DEFAULT_INSTRUCTIONS = """\
You maintain the long-term memory of an AI assistant. Read the NEW messages of a conversation and \
write down the facts worth remembering in later conversations.

What to keep: preferences and dislikes, plans and intentions, biographical facts (work, home, family, \
health, education, possessions), relationships and facts about the people, pets, places and things \
the speakers mention, decisions, opinions, feedback about the assistant, and commitments the assistant \
made. Take facts from user AND assistant messages alike; from the assistant keep what it states about \
the user or promises to do, not general knowledge, suggestions or small talk.
What to skip: greetings, thanks, filler, questions that reveal nothing, general knowledge, and \
anything already stated by an existing memory (unless it changed).

How to write each fact:
- One short sentence that makes sense on its own, in the third person.
- Replace "I", "me", "my", "we", "you" with the speaker's name as given in brackets (for example \
"I love hiking" said by [Alice] becomes "Alice loves hiking").
- Turn relative times ("yesterday", "next month", "last summer", "in two weeks") into absolute dates \
using the observation date.
- Keep names, numbers and places exactly as said. Use the language of the conversation.
- Split unrelated information into separate facts; do not invent anything.

For every fact give:
- "text": the sentence;
- "source_message_ids": the ids (like "m2") of the NEW messages it comes from;
- "attributed_to": the name of the speaker who stated it;
- "supersedes": the ids (like "r3") of EXISTING memories this fact makes no longer true. Only list \
an existing memory when the new fact truly replaces it: "Alice moved to Madrid" supersedes "Alice \
lives in Berlin"; "Alice no longer eats meat" supersedes "Alice loves steak"; a new phone number \
supersedes the old one. Do NOT supersede when both can be true at once ("Alice likes ramen" does \
not replace "Alice likes sushi") or when the new fact only adds detail. Otherwise use [];
- "entities": the named people, pets, places, organisations, products and dated events the fact \
mentions, each {"name": "Maya", "type": "person|pet|place|organization|product|event|other", \
"aliases": ["daughter"]} (aliases: other ways the speakers refer to it, such as a relation). Do not \
list the speaker themselves. Use [] when there are none.

Earlier messages are context only (to understand references); do not extract facts from them.
Answer with JSON only: {"facts": [{"text": "...", "source_message_ids": ["m1"], "attributed_to": \
"...", "supersedes": [], "entities": []}]}. If nothing is worth remembering, answer {"facts": []}.\
"""


@dataclass(slots=True)
class _Chunk:
    messages: list[tuple[str, StoredMessage, str]]  # (alias, message, text shown)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d (%A) %H:%M %Z").strip()


def _split_long(text: str, limit: int) -> list[str]:
    """Split one long text at paragraph, then sentence, then hard boundaries into <= limit pieces."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    current = ""
    for part in re.split(r"(?<=\n\n)|(?<=[.!?])\s+", text):
        while len(part) > limit:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(part[:limit])
            part = part[limit:]
        if len(current) + len(part) + 1 > limit and current:
            pieces.append(current)
            current = ""
        current = f"{current} {part}" if current else part
    if current:
        pieces.append(current)
    return pieces


class LLMExtractor(Extractor):
    """Extracts facts with an LLM: one call per ``add`` (more only for very long inputs)."""

    def __init__(self, llm: LLM, *, max_input_chars: int = 24_000, temperature: float | None = 0.0) -> None:
        self.llm = llm
        self.max_input_chars = max_input_chars
        self.temperature = temperature

    @property
    def name(self) -> str:
        return self.llm.name

    def _chunks(self, messages: list[StoredMessage]) -> list[_Chunk]:
        chunks: list[_Chunk] = []
        current: list[tuple[str, StoredMessage, str]] = []
        size = 0
        for index, message in enumerate(messages, start=1):
            for piece in _split_long(message.content, self.max_input_chars):
                if current and size + len(piece) > self.max_input_chars:
                    chunks.append(_Chunk(current))
                    current, size = [], 0
                current.append((f"m{index}", message, piece))
                size += len(piece)
        if current:
            chunks.append(_Chunk(current))
        return chunks

    def build_messages(
        self, request: ExtractionRequest, chunk: list[tuple[str, StoredMessage, str]]
    ) -> list[dict[str, str]]:
        """The chat messages of one extraction call (system rules + one user message)."""
        system = DEFAULT_INSTRUCTIONS
        if request.custom_instructions and request.custom_instructions.strip():
            system += (
                "\n\nAdditional instructions from the application (they take precedence over the rules "
                f"above when they conflict):\n{request.custom_instructions.strip()}"
            )
        if request.prompt and request.prompt.strip():
            system += (
                "\n\nInstructions for this conversation (they take precedence over everything above "
                f"except the answer format):\n{request.prompt.strip()}"
            )
        lines = [f"Observation date: {_when(request.observed_at)}", ""]
        if request.related:
            lines.append("EXISTING memories related to this conversation (id: text [observed]):")
            for i, record in enumerate(request.related, start=1):
                lines.append(f"- r{i}: {record.text} [{record.observed_at.date().isoformat()}]")
        else:
            lines.append("EXISTING memories related to this conversation: none")
        lines.append("")
        if request.recent:
            lines.append("Earlier messages (context only):")
            for message in request.recent:
                lines.append(f"[{speaker_name(message)}, {message.role}]: {message.content}")
            lines.append("")
        lines.append("NEW messages (extract from these):")
        for alias, message, text in chunk:
            lines.append(f"{alias} [{speaker_name(message)}, {message.role}]: {text}")
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]

    async def extract(self, request: ExtractionRequest) -> ExtractionResult:
        """One LLM call per chunk of new messages; ids the model invents are dropped."""
        usable = [m for m in request.messages if m.role != "system" and m.content.strip()]
        related_alias = {f"r{i}": r.id for i, r in enumerate(request.related, start=1)}
        related_alias.update({r.id: r.id for r in request.related})
        facts: list[ExtractedFact] = []
        raws: list[str] = []
        for chunk in self._chunks(usable):
            parsed, raw = await complete_facts(
                self.llm,
                self.build_messages(request, chunk.messages),
                schema=EXTRACTION_SCHEMA,
                temperature=self.temperature,
            )
            raws.append(raw)
            for note in parsed.notes:
                logger.info("%s extraction: %s", self.name, note)
            facts.extend(_resolve(fact, chunk.messages, related_alias) for fact in parsed.facts)
        return ExtractionResult(facts=facts, extractor=self.name, raw_output="\n".join(raws) or None)


def _unique(messages: list[StoredMessage]) -> list[StoredMessage]:
    out: list[StoredMessage] = []
    seen: set[str] = set()
    for message in messages:
        if message.id not in seen:
            seen.add(message.id)
            out.append(message)
    return out


def _resolve(
    fact: FactOut, chunk: list[tuple[str, StoredMessage, str]], related_alias: dict[str, str]
) -> ExtractedFact:
    by_ref: dict[str, StoredMessage] = {}
    for alias, msg, _ in chunk:
        by_ref[alias] = msg
        by_ref[msg.id] = msg
    sources: list[StoredMessage] = []
    for ref in fact.source_message_ids:
        clean = ref.strip().strip("[]")
        found = by_ref.get(clean.lower()) or by_ref.get(clean)
        if found is not None:
            sources.append(found)
    speaker = (fact.attributed_to or "").strip().lower()
    spoken_by = _unique([m for _, m, _ in chunk if speaker and speaker_name(m).lower() == speaker])
    sources = _unique(sources) or spoken_by or _unique([m for _, m, _ in chunk])
    author = spoken_by[0] if spoken_by else sources[0]
    supersedes = [related_alias[s.strip()] for s in fact.supersedes if s.strip() in related_alias]
    return ExtractedFact(
        text=fact.text,
        source_message_ids=[m.id for m in sources],
        actor_id=author.name,
        role=author.role,
        supersedes=list(dict.fromkeys(supersedes)),
        entities=mentions_from_json(fact.entities),
    )

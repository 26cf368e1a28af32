"""Named entities in memories: deterministic extraction, grouping per scope, and the entity filter.

:func:`extract_entities` finds people, pets, places, organisations, products and dated events in one
text with rules only (capitalisation, possessives, patterns such as "my daughter Maya" or "works at
Acme"); no model. An LLM extractor may supply the mentions itself (see ``extract/parse.py``).
:func:`group_entities` turns the stored links of a scope into entities with aliases ("my daughter
Maya" and a later "my daughter" are one person). :func:`resolve_entity_filter` rewrites the
``{"entity": ...}`` filter key into a memory-id condition every store already compiles.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engram.derived import EntityLink, EntityMention
from engram.filters import And, Cond, Field, FilterNode, Not, Or
from engram.types import WriteOutcome, text_hash

ENTITY_FILTER_KEY = "entity"
_RELATIONS = (
    "best friend|daughter|son|wife|husband|partner|boyfriend|girlfriend|fianc[ée]e?|mother|mom|mum|"
    "father|dad|sister|brother|friend|boss|colleague|co-?worker|manager|grandmother|grandma|granny|"
    "grandfather|grandpa|aunt|uncle|cousin|niece|nephew|roommate|flatmate|neighbou?r|teacher|doctor|"
    "therapist|coach|kid|child|baby|stepson|stepdaughter|twin|classmate|mentor|landlord"
)
_PETS = (
    "dog|cat|puppy|kitten|hamster|parrot|rabbit|bunny|horse|pony|goldfish|fish|bird|turtle|tortoise|"
    "snake|lizard|guinea pig|ferret|gecko|pet"
)
_MONTH_NAMES = [m for m in calendar.month_name if m]
_MONTHS = "|".join(_MONTH_NAMES + [m for m in calendar.month_abbr if m])
_WEEKDAYS = "|".join(calendar.day_name)
_WORD = r"(?:[A-Za-z][a-z]*[A-Z][A-Za-z]*\d*|[A-Z][a-zà-öø-ÿ]+(?:-[A-Z]?[a-zà-öø-ÿ]+)?|[A-Z]{2,}[a-z]?)\b"
_CAPS = rf"{_WORD}(?:\s+(?:of\s+|de\s+|the\s+)?{_WORD})*(?:\s+\d+[A-Za-z]?)?"
_NAME = r"[A-Z][a-zà-öø-ÿ]+(?:\s+[A-Z][a-zà-öø-ÿ]+)?"
_OWNER = r"(?:[Mm]y|[Oo]ur|[Hh]is|[Hh]er|[Tt]heir|[Yy]our|[\w.-]+'s)"
_ADJ = r"(?:(?:little|older|younger|big|baby|new|old|eldest|youngest|oldest|late|twin|dear)\s+)*"
_DATE = (
    rf"\d{{4}}-\d{{2}}-\d{{2}}|(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?|"
    rf"\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTHS})(?:\s+\d{{4}})?|(?:next\s+|this\s+)?(?:{_WEEKDAYS})|"
    r"tomorrow|tonight|today"
)
_EVENTS = (
    "birthday|wedding|anniversary|recital|graduation|appointment|interview|exam|surgery|party|concert|"
    "conference|flight|trip|vacation|holiday|meeting|game|match|race|marathon|show|performance|"
    "ceremony|funeral|due date|reunion|deadline|checkup|check-up|visit"
)
_KIN = re.compile(
    rf"\b{_OWNER}\s+{_ADJ}(?P<rel>{_RELATIONS}|{_PETS})(?:'s name is|,)?\s+"
    rf"(?:(?:is\s+)?(?:called|named)\s+|is\s+)?(?P<name>{_NAME})\b"
)
_KIN_AFTER = re.compile(
    rf"\b(?P<name>{_NAME}),?\s+(?:is\s+|was\s+)?{_OWNER}\s+{_ADJ}(?P<rel>{_RELATIONS}|{_PETS})\b"
)
_A_PET = re.compile(rf"\b(?:a|an|the)\s+{_ADJ}(?P<rel>{_PETS})\s+(?:called|named)\s+(?P<name>{_NAME})\b")
_BARE_KIN = re.compile(rf"\b{_OWNER}\s+{_ADJ}(?P<rel>{_RELATIONS}|{_PETS})\b")
_ORG = re.compile(
    rf"\b(?:work(?:s|ed|ing)?|job|intern(?:s|ed|ing)?|employed|hired|joined|join|joining|studie?s|"
    rf"studying|studied|enrolled|volunteers?|volunteering)\s+"
    rf"(?:(?:as\s+an?\s+[a-z ]+?\s+)?(?:at|for|with|by)\s+)?"
    rf"(?P<name>{_CAPS})"
)
_ORG_SUFFIX = re.compile(
    r"\b(?:Inc|Corp|Corporation|Ltd|LLC|GmbH|AG|SA|University|College|School|Academy|Bank|Hospital|"
    r"Clinic|Labs?|Group|Company|Co|Foundation|Institute|Airlines?|Studios?|Agency|Association|Club|"
    r"Church|Museum|Council|Ministry|Department|Team)\b|^University of\b"
)
_PLACE_SUFFIX = re.compile(
    r"\b(?:Cafe|Café|Coffee|Restaurant|Bar|Pub|Bistro|Hotel|Park|Street|Avenue|Road|Beach|Lake|River|"
    r"Mountains?|Airport|Station|Mall|Market|Gym|Stadium|Square|Bridge|Island|Valley|Bay|Zoo)$"
)
_PLACE = re.compile(
    rf"\b(?:in|near|around|outside|visit(?:s|ed|ing)?|(?:move[sd]?|moving|go(?:es|ing)?|went|"
    rf"travel(?:l?ed|l?ing|s)?|fly(?:ing)?|flew|trip|drive|driving|drove|head(?:ed|ing)?|relocat\w*|"
    rf"back|return(?:ed|ing)?|commute[sd]?)\s+to|(?:is|are|am|was|comes?|came|moved|born|originally)\s+"
    rf"(?:from|in))\s+(?:the\s+)?(?P<name>{_CAPS})"
)
_PRODUCT = re.compile(
    rf"\b(?:bought|buy(?:s|ing)?|got|ordered|owns?|use[sd]?|using|drive[sn]?|driving|drove|plays?|"
    rf"playing|upgraded to|switched to|installed|wear(?:s|ing)?|reading|read|watching|watched|loves?|"
    rf"likes?|enjoys?|prefers?)\s+(?:a\s+|an\s+|the\s+|my\s+|his\s+|her\s+|their\s+|our\s+)?(?:new\s+|old\s+)?"
    rf"(?P<name>{_CAPS})"
)
_EVENT = re.compile(rf"\b(?P<event>{_EVENTS})\b", re.IGNORECASE)
_EVENT_OWNER = re.compile(rf"(?P<owner>{_NAME})'s\s+$")
_EVENT_DATE = re.compile(
    rf"[^.;!?]{{0,40}}?\b(?:on|is|in|at|this|next|for)?\s*(?P<date>{_DATE})\b", re.IGNORECASE
)
_UPPER = re.compile(r"[A-Z]")
_HAS_KIN = re.compile(rf"\b(?:{_RELATIONS}|{_PETS})\b", re.IGNORECASE)
_CAPS_RUN = re.compile(rf"(?<![\w'])(?P<name>{_CAPS})(?P<poss>'s)?")
_PERSON_BEFORE = re.compile(
    r"\b(?:with|met|meet|meeting|call(?:ed)?|told|tell|asked|ask|invited|invite|texted|emailed|"
    r"visited|visiting|and|married|dating|dated|hug(?:ged)?|help(?:ed|ing)?|love[sd]?|miss(?:es|ed)?)\s+$"
)
_NAME_VERB = re.compile(
    r"^\s+(?:is|was|has|had|lives|lived|works|worked|loves|likes|hates|said|says|wants|needs|and I|"
    r"studies|plays|turned|turns|became|got|goes|went|called|texted|visited|moved)\b"
)
_STOP = {
    "i", "i'm", "i've", "i'd", "i'll", "the", "a", "an", "my", "our", "his", "her", "their", "your",
    "it", "this", "that", "these", "those", "we", "you", "he", "she", "they", "and", "but", "or", "so",
    "if", "when", "also", "today", "tonight", "tomorrow", "yesterday", "ok", "okay", "yes", "no", "hi",
    "hello", "hey", "thanks", "please", "mr", "mrs", "ms", "dr", "user", "assistant", "am", "pm", "tv",
    "usd", "eur", "gbp", "etc", "next", "last", "every", "one", "some", "any", "all",
}  # fmt: skip
_CALENDAR = {m.lower() for m in _MONTH_NAMES} | {d.lower() for d in calendar.day_name}
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_DETERMINER = re.compile(r"^(?:(?:my|our|his|her|their|your|the|a|an|[\w.-]+'s)\s+)+", re.I)


def norm(name: str) -> str:
    """The comparison key of an entity name or alias: case-folded, single spaces, no determiner."""
    cleaned = _DETERMINER.sub("", " ".join(name.replace("’", "'").split()))
    return cleaned.casefold().strip(" .,;:!?\"'")


def entity_id(name: str) -> str:
    """A stable id for an entity name (the same in every scope and store)."""
    return "ent_" + hashlib.sha1(norm(name).encode("utf-8")).hexdigest()[:16]


def _clean_name(raw: str) -> str | None:
    words = raw.split()
    while words and (words[-1].lower() in _STOP or words[-1].lower() in _CALENDAR):
        words.pop()
    while words and (words[0].lower() in _STOP or words[0].lower() in _CALENDAR):
        words.pop(0)
    name = " ".join(words).strip(" .,;:'")
    return name if len(name) > 1 and re.search(r"[A-Za-z]{2}", name) else None


@dataclass
class _Found:
    by_key: dict[str, EntityMention] = field(default_factory=dict)

    def add(
        self, name: str | None, type_: str, aliases: tuple[str, ...] = (), date: str | None = None
    ) -> None:
        if not name:
            return
        key = norm(name)
        if not key or key in _STOP:
            return
        old = self.by_key.get(key)
        if old is None:
            self.by_key[key] = EntityMention(name, type_, aliases, date)
            return
        merged_aliases = tuple(dict.fromkeys((*old.aliases, *aliases)))
        keep_type = old.type if old.type != "other" else type_
        self.by_key[key] = EntityMention(old.name, keep_type, merged_aliases, old.date or date)

    def known(self, name: str) -> bool:
        return norm(name) in self.by_key

    def without(self, exclude: tuple[str, ...]) -> list[EntityMention]:
        skip = {norm(x) for x in exclude if x}
        return [m for key, m in self.by_key.items() if key not in skip]


def _relation_type(rel: str) -> str:
    return "pet" if re.fullmatch(_PETS, rel.lower()) else "person"


def extract_entities(text: str, *, exclude: tuple[str, ...] = ()) -> list[EntityMention]:
    """The named entities one text mentions, in the order found (``exclude``: names to skip)."""
    found = _Found()
    text = text.replace("’", "'")
    if _HAS_KIN.search(text):
        _kinship(text, found)
    _events(text, found)
    if _UPPER.search(text, 1) is None:  # nothing capitalised past the first letter: no names
        return found.without(exclude)
    for pattern, type_ in ((_ORG, "organization"), (_PLACE, "place"), (_PRODUCT, "product")):
        for match in pattern.finditer(text):
            name = _clean_name(match.group("name"))
            if name and not found.known(name):
                kind = "organization" if _ORG_SUFFIX.search(name) else type_
                found.add(name, kind)
    _capitalised(text, found)
    return found.without(exclude)


def _events(text: str, found: _Found) -> None:
    """Events with a date: "Maya's recital is on March 14", "my appointment on 2026-05-02"."""
    for match in _EVENT.finditer(text):
        dated = _EVENT_DATE.match(text, match.end())
        if dated is None:
            continue
        event = match.group("event").lower()
        owner_match = _EVENT_OWNER.search(text, max(0, match.start() - 40), match.start())
        owner = owner_match.group("owner") if owner_match else None
        name = f"{owner}'s {event}" if owner and owner.lower() not in _STOP else event
        found.add(name, "event", (), dated.group("date"))


def _kinship(text: str, found: _Found) -> None:
    for pattern in (_KIN, _KIN_AFTER, _A_PET):
        for match in pattern.finditer(text):
            rel = match.group("rel").lower()
            name = _clean_name(match.group("name"))
            if name and name.lower() not in _CALENDAR:
                found.add(name, _relation_type(rel), (rel,))
    named = {a for m in found.by_key.values() for a in m.aliases}
    for match in _BARE_KIN.finditer(text):
        rel = match.group("rel").lower()
        if rel not in named:  # "my daughter" alone: resolved against named ones when grouping
            found.add(rel, _relation_type(rel), (rel,))


def _capitalised(text: str, found: _Found) -> None:
    """Capitalised runs the patterns did not type: people by context, organisations by suffix."""
    for sentence in _SENTENCE.split(text):
        for match in _CAPS_RUN.finditer(sentence):
            first = match.group("name").split()[0].lower()
            name = _clean_name(match.group("name"))
            if not name or found.known(name) or first in _CALENDAR:
                continue
            before, after = sentence[: match.start()], sentence[match.end() :]
            at_start = not before.strip(" \"'(-*")
            person_hint = (
                bool(match.group("poss")) or _PERSON_BEFORE.search(before) or _NAME_VERB.match(after)
            )
            if at_start and not person_hint:
                continue  # a capitalised first word is usually just capitalised
            if _ORG_SUFFIX.search(name):
                found.add(name, "organization")
            elif _PLACE_SUFFIX.search(name):
                found.add(name, "place")
            elif person_hint and len(name.split()) <= 2:
                found.add(name, "person")
            else:
                found.add(name, "other")


def links_for(
    outcomes: Sequence[WriteOutcome], hints: dict[str, list[EntityMention]], *, exclude: tuple[str, ...]
) -> list[EntityLink]:
    """The links of stored (ADD), matched (NONE) or rewritten (UPDATE) memories: the extractor's
    entities for a fact when it gave them (by the fact's text hash), else the rules'."""
    links: list[EntityLink] = []
    for outcome in outcomes:
        if outcome.event not in ("ADD", "NONE", "UPDATE") or not outcome.text:
            continue
        key = text_hash(outcome.text)
        mentions = hints[key] if key in hints else extract_entities(outcome.text, exclude=exclude)
        links.extend(EntityLink(outcome.id, mention) for mention in mentions)
    return links


def mentions_from_json(raw: Any) -> list[EntityMention] | None:
    """Mentions an LLM wrote (``[{"name", "type", "aliases"}]``), or None when it wrote none."""
    if not isinstance(raw, list):
        return None
    out: list[EntityMention] = []
    for item in raw:
        if isinstance(item, str) and item.strip():
            out.append(EntityMention(item.strip(), "other"))
        elif isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"].strip():
            type_ = str(item.get("type") or "other").lower()
            listed = item.get("aliases")
            aliases: list[Any] = listed if isinstance(listed, list) else []
            date = item.get("date") if isinstance(item.get("date"), str) else None
            clean_aliases = tuple(str(a).strip().lower() for a in aliases if str(a).strip())
            out.append(EntityMention(item["name"].strip(), _known_type(type_), clean_aliases, date))
    return out


def _known_type(type_: str) -> str:
    synonyms = {"org": "organization", "organisation": "organization", "company": "organization",
                "location": "place", "city": "place", "country": "place", "animal": "pet",
                "people": "person", "date": "event", "thing": "other"}  # fmt: skip
    type_ = synonyms.get(type_, type_)
    return type_ if type_ in ("person", "pet", "place", "organization", "product", "event") else "other"


# -- grouping a scope's links into entities --------------------------------------------------------
@dataclass
class Entity:
    """A named entity of a scope with the memories that mention it."""

    name: str
    type: str
    aliases: list[str] = field(default_factory=list)
    memory_ids: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return entity_id(self.name)

    def names(self) -> set[str]:
        return {norm(self.name), *(norm(a) for a in self.aliases)}

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "aliases": self.aliases,
            "mentions": len(self.memory_ids),
            "memory_ids": self.memory_ids,
        }
        if self.dates:
            item["dates"] = self.dates
        return item


def group_entities(links: list[EntityLink]) -> list[Entity]:
    """Entities of a scope, most mentioned first; bare relations join the one named entity they name."""
    groups: dict[str, list[EntityLink]] = {}
    for link in links:
        groups.setdefault(norm(link.mention.name), []).append(link)
    entities = {key: _entity(group) for key, group in groups.items()}
    bare = {key for key, e in entities.items() if e.aliases == [key] and e.type in ("person", "pet")}
    for key in bare:
        owners = [e for k, e in entities.items() if k not in bare and key in (norm(a) for a in e.aliases)]
        if len(owners) == 1:
            owners[0].memory_ids.extend(i for i in entities[key].memory_ids if i not in owners[0].memory_ids)
    named = [e for key, e in entities.items() if key not in bare]
    return sorted(named, key=lambda e: (-len(e.memory_ids), e.name.casefold()))


def _entity(group: list[EntityLink]) -> Entity:
    names = Counter(link.mention.name for link in group)
    types = Counter(link.mention.type for link in group if link.mention.type != "other")
    aliases = dict.fromkeys(a for link in group for a in link.mention.aliases)
    dates = dict.fromkeys(link.mention.date for link in group if link.mention.date)
    return Entity(
        name=names.most_common(1)[0][0],
        type=types.most_common(1)[0][0] if types else "other",
        aliases=list(aliases),
        memory_ids=list(dict.fromkeys(link.memory_id for link in group)),
        dates=[d for d in dates if d],
    )


def find_entity(entities: list[Entity], value: str) -> Entity | None:
    """The entity named (or aliased) ``value``; ``"my daughter"`` finds Maya."""
    key = norm(value)
    for entity in entities:
        if key in entity.names() or entity.id == value:
            return entity
    return None


# -- the entity filter -----------------------------------------------------------------------------
def has_entity_filter(node: FilterNode | None) -> bool:
    if node is None:
        return False
    if isinstance(node, Cond):
        return node.field.kind == "metadata" and node.field.name == ENTITY_FILTER_KEY
    if isinstance(node, Not):
        return has_entity_filter(node.child)
    return any(has_entity_filter(c) for c in node.children)


def resolve_entity_filter(node: FilterNode, entities: list[Entity]) -> FilterNode:
    """Replace ``entity`` conditions by conditions on the ids of the memories that mention them."""
    if isinstance(node, And):
        return And(tuple(resolve_entity_filter(c, entities) for c in node.children))
    if isinstance(node, Or):
        return Or(tuple(resolve_entity_filter(c, entities) for c in node.children))
    if isinstance(node, Not):
        return Not(resolve_entity_filter(node.child, entities))
    if node.field.kind != "metadata" or node.field.name != ENTITY_FILTER_KEY:
        return node
    ids = _matching_ids(node, entities)
    negate = node.op in ("ne", "nin")
    # an impossible id keeps "in" well-formed when nothing matches
    return Cond(Field("column", "id"), "nin" if negate else "in", ids or ["-"], node.path)


def _matching_ids(node: Cond, entities: list[Entity]) -> list[str]:
    if node.op == "exists":
        chosen = entities
    elif node.op in ("contains", "icontains"):
        needle = str(node.value).casefold()
        chosen = [e for e in entities if any(needle in k for k in e.names())]
    else:
        values = node.value if isinstance(node.value, list) else [node.value]
        chosen = [e for v in values if (e := find_entity(entities, str(v))) is not None]
    return list(dict.fromkeys(i for e in chosen for i in e.memory_ids))

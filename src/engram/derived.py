"""Records of what Engram derives from memories: named-entity links and stored profiles.

They are plain data shared by the engine (:mod:`engram.entities`, :mod:`engram.profiles`) and the
stores, so neither side depends on the other's internals.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ENTITY_TYPES: tuple[str, ...] = ("person", "pet", "place", "organization", "product", "event", "other")


@dataclass(frozen=True, slots=True)
class EntityMention:
    """One named entity as one text mentions it (``"my daughter Maya"``: Maya, person, daughter)."""

    name: str
    type: str
    aliases: tuple[str, ...] = ()
    date: str | None = None  # ISO date of an event, when the text gives one


@dataclass(frozen=True, slots=True)
class EntityLink:
    """A mention tied to the memory that makes it (what a store keeps, one row each)."""

    memory_id: str
    mention: EntityMention


@dataclass(slots=True)
class StoredProfile:
    """A user's profile as the store keeps it (the engine decides what is stale)."""

    user_id: str
    body: dict[str, Any] = field(default_factory=dict)  # profile, memory_ids, fingerprint, built_at...


def link_row(namespace: str, link: EntityLink) -> tuple[str, str, str, str, str, str, str | None]:
    """The column values a store writes for one link (aliases as a JSON array)."""
    from engram.entities import norm

    m = link.mention
    return (namespace, link.memory_id, norm(m.name), m.name, m.type, json.dumps(list(m.aliases)), m.date)


def link_from_row(row: Sequence[Any]) -> EntityLink:
    """An :class:`EntityLink` from (memory_id, name, type, aliases JSON, date) as a store reads it."""
    aliases = json.loads(row[3]) if isinstance(row[3], str) else list(row[3] or [])
    return EntityLink(row[0], EntityMention(row[1], row[2], tuple(aliases), row[4]))

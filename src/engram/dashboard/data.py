"""What the pages show, read through AsyncMemory's public methods and the server state (no SQL here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from engram.dashboard.filterlang import ParsedFilter, parse_filter_box
from engram.memory import AsyncMemory
from engram.service import ENTITY_TYPES, ServiceState

SCAN_LIMIT = 5000  # rows read when the table sorts or matches text itself
PAGE_SIZES = (25, 50, 100)
SORTS = {
    "observed": "observed_at",
    "created": "created_at",
    "updated": "updated_at",
    "text": "memory",
    "user": "user_id",
}


@dataclass
class ListQuery:
    """The memories table's state, as it travels in the URL."""

    filter: str = ""
    sort: str = "observed"
    desc: bool = True
    page: int = 1
    size: int = 25
    superseded: bool = False
    expired: bool = False

    @classmethod
    def from_params(cls, params: Any) -> ListQuery:
        size = int_param(params, "size", 25, 1, 100)
        return cls(
            filter=str(params.get("filter") or "")[:2000],
            sort=params.get("sort") if params.get("sort") in SORTS else "observed",
            desc=params.get("dir") != "asc",
            page=int_param(params, "page", 1, 1, 10**6),
            size=size if size in PAGE_SIZES else 25,
            superseded=params.get("superseded") == "1",
            expired=params.get("expired") == "1",
        )

    def params(self, **changes: Any) -> dict[str, Any]:
        """URL parameters of this state with ``changes`` applied (empty defaults left out)."""
        values = {
            "filter": self.filter,
            "sort": self.sort,
            "dir": "desc" if self.desc else "asc",
            "page": self.page,
            "size": self.size,
            "superseded": "1" if self.superseded else "",
            "expired": "1" if self.expired else "",
            **changes,
        }
        return {k: v for k, v in values.items() if v not in ("", None)}


def int_param(params: Any, name: str, default: int, low: int, high: int) -> int:
    """An integer URL parameter clamped to [low, high]; ``default`` when absent or not a number."""
    raw = str(params.get(name) or "")
    return max(low, min(high, int(raw))) if raw.isdigit() else default


@dataclass
class ListResult:
    rows: list[dict[str, Any]]
    total: int
    pages: int
    capped: bool = False  # the table sorted or matched text over the first SCAN_LIMIT rows only


def visibility(query: ListQuery) -> dict[str, Any]:
    return {"include_superseded": query.superseded, "show_expired": query.expired}


async def list_memories(memory: AsyncMemory, query: ListQuery) -> ListResult:
    """One page of the table. The store orders by observation time; other orders and text words are
    applied here over at most SCAN_LIMIT matching rows (``capped`` says when more matched)."""
    parsed = parse_filter_box(query.filter)
    vis = visibility(query)
    size, start = query.size, (query.page - 1) * query.size
    if not parsed.words and query.sort == "observed":
        if query.desc:
            found = await memory.get_all(
                all_scopes=True, filters=parsed.filters, top_k=size, offset=start, **vis
            )
            return ListResult(found["results"], found["total"], _pages(found["total"], size))
        total = (await memory.get_all(all_scopes=True, filters=parsed.filters, top_k=1, **vis))["total"]
        end = max(0, total - start)
        rows: list[dict[str, Any]] = []
        if end > 0:
            first = max(0, end - size)
            found = await memory.get_all(
                all_scopes=True, filters=parsed.filters, top_k=end - first, offset=first, **vis
            )
            rows = list(reversed(found["results"]))
        return ListResult(rows, total, _pages(total, size))
    found = await memory.get_all(all_scopes=True, filters=parsed.filters, top_k=SCAN_LIMIT, **vis)
    matched = [r for r in found["results"] if parsed.text_matches(r["memory"])]
    key = SORTS[query.sort]
    matched.sort(key=lambda r: (r.get(key) or "", r.get("updated_at") or ""), reverse=query.desc)
    return ListResult(
        matched[start : start + size], len(matched), _pages(len(matched), size), found["total"] > SCAN_LIMIT
    )


def _pages(total: int, size: int) -> int:
    return max(1, -(-total // size))


async def search_memories(
    memory: AsyncMemory, text: str, parsed: ParsedFilter, query: ListQuery, *, explain: bool = False
) -> list[dict[str, Any]]:
    """Full-text + semantic search inside the table's filter, best first, with scores."""
    found = await memory.search(
        text, all_scopes=True, filters=parsed.filters, top_k=50, explain=explain, **visibility(query)
    )
    return [r for r in found["results"] if parsed.text_matches(r["memory"])]


# -- entities -----------------------------------------------------------------------------------
@dataclass
class EntityRow:
    type: str
    name: str
    memories: int

    @property
    def field(self) -> str:
        return f"{self.type}_id"


async def entity_rows(
    memory: AsyncMemory, state: ServiceState | None, project_id: str | None
) -> list[EntityRow]:
    """Each user, agent, app and run with its memory count: those the server state recorded, plus any
    scope id among the latest SCAN_LIMIT memories (library writes leave no entity record)."""
    names: set[tuple[str, str]] = set()
    if state is not None and project_id is not None:
        names.update((e.type, e.name) for e in await state.list_entities(project_id))
    latest = await memory.get_all(all_scopes=True, top_k=SCAN_LIMIT)
    for item in latest["results"]:
        for type_ in ENTITY_TYPES:
            if item.get(f"{type_}_id"):
                names.add((type_, item[f"{type_}_id"]))
    rows = []
    for type_, name in sorted(names, key=lambda n: (ENTITY_TYPES.index(n[0]), n[1].casefold())):
        scope: dict[str, Any] = {f"{type_}_id": name}
        count = (await memory.get_all(top_k=1, **scope))["total"]
        if count:
            rows.append(EntityRow(type_, name, count))
    return rows


def entity_summary(rows: list[EntityRow]) -> list[dict[str, Any]]:
    """Per type: how many entities and the largest ones."""
    summary = []
    for type_ in ENTITY_TYPES:
        of_type = sorted((r for r in rows if r.type == type_), key=lambda r: -r.memories)
        summary.append({"type": type_, "count": len(of_type), "top": of_type[:5]})
    return summary


# -- overview -----------------------------------------------------------------------------------
@dataclass
class Overview:
    total: int
    superseded: int
    days: list[date]
    adds: list[int]
    searches: list[int]
    queue: dict[str, int] = field(default_factory=dict)
    storage: list[tuple[str, int]] = field(default_factory=list)
    embedder: str = ""
    store: str = ""


async def adds_per_day(memory: AsyncMemory, days: list[date]) -> list[int]:
    """Memories created each day (superseded ones included, deleted ones not)."""
    counts = []
    for day in days:
        found = await memory.get_all(
            all_scopes=True, filters={"created_at": day.isoformat()}, top_k=1, include_superseded=True
        )
        counts.append(found["total"])
    return counts


async def queue_counts(state: ServiceState, project_id: str) -> dict[str, int]:
    counts = {}
    for status in ("PENDING", "RUNNING", "FAILED"):
        counts[status] = (await state.list_jobs(project_id, kind="ADD", status=status, limit=1, offset=0))[1]
    return counts


def last_days(n: int) -> list[date]:
    today = datetime.now(UTC).date()
    return [today - timedelta(days=n - 1 - i) for i in range(n)]


def store_description(memory: AsyncMemory) -> tuple[str, list[tuple[str, int]]]:
    """The store's class and, for a file store, its files and their sizes in bytes."""
    store = memory.store
    path = getattr(store, "path", None)
    if not isinstance(path, Path):
        return type(store).__name__, []
    files = [Path(str(path) + suffix) for suffix in ("", "-wal")]
    return f"{type(store).__name__} ({path})", [(f.name, f.stat().st_size) for f in files if f.exists()]

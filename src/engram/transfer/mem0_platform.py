"""Import from mem0's Platform, or any server speaking its REST API (Engram's own included).

Entities come from ``GET /v1/entities/``; each entity's memories from ``POST /v2/memories/`` page by
page, each memory's changes from ``GET /v1/memories/{id}/history/``. After every page a checkpoint file
records how far the import got, so an interrupted run continues where it stopped (and pages done twice
are harmless: their memories are already there, and skipped). A finished import removes it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from engram.errors import ProviderError, ValidationError
from engram.memory import AsyncMemory
from engram.transfer.importer import ImportReport, Incoming, import_memories
from engram.transfer.mem0_oss import parse_time, to_restored

DEFAULT_HOST = "https://api.mem0.ai"
PAGE_SIZE = 100
EntityProgress = Callable[[int, int], None]  # (memories done, memories announced by the entities)


@dataclass
class Checkpoint:
    """How far an import got: finished entities, and the last page finished of the current one."""

    path: Path
    host: str
    done: list[str] = field(default_factory=list)
    current: str | None = None
    page: int = 0
    report: dict[str, Any] = field(default_factory=lambda: ImportReport().as_dict())
    progress: Callable[[], None] | None = None

    def count(self) -> int:
        """Memories handled so far (this run and the interrupted ones)."""
        return int(self.report["imported"]) + int(self.report["skipped"]) + len(self.report["conflicts"])

    @classmethod
    def load(cls, path: Path, host: str) -> Checkpoint:
        if not path.exists():
            return cls(path, host)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValidationError(f"cannot read the checkpoint {path}: {e}", field="checkpoint") from e
        if raw.get("host") != host:
            raise ValidationError(
                f"the checkpoint {path} belongs to an import from {raw.get('host')}; remove it or choose "
                "another --checkpoint",
                field="checkpoint",
            )
        return cls(path, host, raw.get("done", []), raw.get("current"), raw.get("page", 0), raw["report"])

    def save(self) -> None:
        data = {"host": self.host, "done": self.done, "current": self.current, "page": self.page,
                "report": self.report}  # fmt: skip
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, self.path)

    def add(self, report: ImportReport) -> None:
        self.report["imported"] += report.imported
        self.report["skipped"] += report.skipped
        self.report["conflicts"] += report.conflicts


def platform_memory(item: dict[str, Any], history: list[dict[str, Any]]) -> Incoming:
    """A Platform memory (and its history) as Engram restores it."""
    payload = {
        **(item.get("metadata") or {}),  # first: the memory's own fields win over same-named metadata
        "data": item.get("memory"),
        "created_at": item.get("created_at"),
        "updated_at": item.get("updated_at"),
        "expiration_date": item.get("expiration_date"),
        **{k: item.get(k) for k in ("user_id", "agent_id", "app_id", "run_id", "actor_id", "role", "hash")},
    }
    if item.get("categories"):
        payload.setdefault("categories", item["categories"])
    restored = to_restored(str(item["id"]), payload, history)
    restored.history[0].details["imported_from"] = "mem0-platform"
    observed = parse_time(item.get("observed_at"))
    if observed is not None:
        restored.record.observed_at = observed
    return Incoming(restored)


class PlatformReader:
    """The few API calls the import needs."""

    def __init__(self, api_key: str, host: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.host = host.rstrip("/")
        self.client = httpx.AsyncClient(
            base_url=self.host, headers={"Authorization": f"Token {api_key}"}, timeout=60, transport=transport
        )

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            response = await self.client.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise ProviderError(f"{self.host}: {e}", provider="mem0-platform") from e
        if response.status_code >= 400:
            raise ProviderError(
                f"{self.host}{path} answered {response.status_code}: {response.text[:300]}",
                provider="mem0-platform",
                details={"status": response.status_code},
            )
        return response.json()

    async def entities(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            data = await self._call("GET", "/v1/entities/", params={"page": page, "page_size": 1000})
            rows = data.get("results", []) if isinstance(data, dict) else data
            found += rows
            if not isinstance(data, dict) or not data.get("next") or not rows:
                return found
            page += 1

    async def memories(self, entity: dict[str, Any], page: int) -> tuple[list[dict[str, Any]], bool]:
        """One page of an entity's memories, and whether more follow."""
        body = {"filters": {"AND": [{f"{entity['type']}_id": entity["name"]}]}}
        params = {"page": page, "page_size": PAGE_SIZE}
        data = await self._call("POST", "/v2/memories/", params=params, json=body)
        if isinstance(data, list):  # a server that ignores paging answers with everything
            return (data if page == 1 else []), False
        return data.get("results", []), bool(data.get("next"))

    async def history(self, memory_id: str) -> list[dict[str, Any]]:
        data = await self._call("GET", f"/v1/memories/{memory_id}/history/")
        return data if isinstance(data, list) else data.get("results", [])

    async def aclose(self) -> None:
        await self.client.aclose()


def entity_key(entity: dict[str, Any]) -> str:
    return f"{entity['type']}:{entity['name']}"


async def _import_entity(
    memory: AsyncMemory,
    reader: PlatformReader,
    checkpoint: Checkpoint,
    entity: dict[str, Any],
    seen: set[str],
) -> None:
    """One entity's pages, from where the checkpoint says, saving it after each page."""
    key = entity_key(entity)
    page = checkpoint.page + 1 if checkpoint.current == key else 1
    checkpoint.current, checkpoint.page = key, page - 1
    while True:
        items, more = await reader.memories(entity, page)
        fresh = [item for item in items if str(item["id"]) not in seen]  # listed under two entities
        seen.update(str(item["id"]) for item in items)
        batch = [platform_memory(item, await reader.history(str(item["id"]))) for item in fresh]
        checkpoint.add(await import_memories(memory, batch))
        checkpoint.page = page
        checkpoint.save()
        if checkpoint.progress is not None:
            checkpoint.progress()
        if not more or not items:
            break
        page += 1
    checkpoint.done.append(key)
    checkpoint.current, checkpoint.page = None, 0
    checkpoint.save()


async def import_platform(
    memory: AsyncMemory,
    reader: PlatformReader,
    checkpoint: Checkpoint,
    progress: EntityProgress | None = None,
) -> ImportReport:
    """Every entity's memories with their history; resumable through ``checkpoint``."""
    entities = [e for e in await reader.entities() if e.get("type") in ("user", "agent", "app", "run")]
    total = sum(int(e.get("total_memories") or 0) for e in entities)
    if progress is not None:
        checkpoint.progress = lambda: progress(min(checkpoint.count(), total), total)
    seen: set[str] = set()
    for entity in entities:
        if entity_key(entity) not in checkpoint.done:
            await _import_entity(memory, reader, checkpoint, entity, seen)
    report = checkpoint.report
    checkpoint.path.unlink(missing_ok=True)  # finished: a later run starts over (and skips what is here)
    return ImportReport(report["imported"], report["skipped"], list(report["conflicts"]))

"""Per-project records of :class:`SQLiteServiceState`: entities, webhooks (and their delivery log),
feedback and exports."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from typing import Any

from engram.service import Delivery, Entity, Export, Webhook
from engram.stores.sqlite.service_connection import SQLiteStateConnection

_ENTITY_FIELDS = {"user_id": "user", "agent_id": "agent", "app_id": "app", "run_id": "run"}


def _webhook(row: sqlite3.Row) -> Webhook:
    return Webhook(
        id=row["id"],
        project_id=row["project_id"],
        name=row["name"],
        url=row["url"],
        secret=row["secret"],
        event_types=json.loads(row["event_types"]),
        is_active=bool(row["is_active"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class SQLiteProjectData(SQLiteStateConnection):
    """Entities, webhooks, deliveries, feedback and exports, each row tied to its project."""

    # -- entities -------------------------------------------------------------------------------
    async def touch_entities(self, project_id: str, ids: dict[str, str]) -> None:
        pairs = [(_ENTITY_FIELDS[k], v) for k, v in ids.items() if k in _ENTITY_FIELDS and v]
        if not pairs:
            return

        def go(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.executemany(
                "INSERT INTO entities (project_id, type, name, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (project_id, type, name) DO UPDATE SET updated_at = excluded.updated_at",
                [(project_id, t, n, now, now) for t, n in pairs],
            )

        await self._run(go)

    async def list_entities(self, project_id: str) -> list[Entity]:
        def go(conn: sqlite3.Connection) -> list[Entity]:
            rows = conn.execute(
                "SELECT * FROM entities WHERE project_id = ? ORDER BY type, name", (project_id,)
            ).fetchall()
            return [
                Entity(r["id"], r["project_id"], r["type"], r["name"], r["created_at"], r["updated_at"])
                for r in rows
            ]

        return await self._run(go)

    async def delete_entity(self, project_id: str, type_: str, name: str) -> bool:
        def go(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM entities WHERE project_id = ? AND type = ? AND name = ?",
                (project_id, type_, name),
            )
            return cur.rowcount > 0

        return await self._run(go)

    # -- webhooks -------------------------------------------------------------------------------
    async def create_webhook(self, project_id: str, name: str, url: str, event_types: list[str]) -> Webhook:
        import secrets

        def go(conn: sqlite3.Connection) -> Webhook:
            now = time.time()
            cur = conn.execute(
                "INSERT INTO webhooks (project_id, name, url, secret, event_types, is_active, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                (project_id, name, url, "whsec_" + secrets.token_hex(24), json.dumps(event_types), now, now),
            )
            return _webhook(conn.execute("SELECT * FROM webhooks WHERE id = ?", (cur.lastrowid,)).fetchone())

        return await self._run(go)

    async def list_webhooks(self, project_id: str) -> list[Webhook]:
        def go(conn: sqlite3.Connection) -> list[Webhook]:
            rows = conn.execute("SELECT * FROM webhooks WHERE project_id = ? ORDER BY id", (project_id,))
            return [_webhook(r) for r in rows.fetchall()]

        return await self._run(go)

    async def get_webhook(self, project_id: str, webhook_id: int) -> Webhook | None:
        def go(conn: sqlite3.Connection) -> Webhook | None:
            row = conn.execute(
                "SELECT * FROM webhooks WHERE id = ? AND project_id = ?", (webhook_id, project_id)
            ).fetchone()
            return _webhook(row) if row else None

        return await self._run(go)

    async def update_webhook(
        self, project_id: str, webhook_id: int, changes: dict[str, Any]
    ) -> Webhook | None:
        allowed = {"name", "url", "event_types", "is_active"}
        sets = {k: v for k, v in changes.items() if k in allowed and v is not None}
        if "event_types" in sets:
            sets["event_types"] = json.dumps(sets["event_types"])
        if "is_active" in sets:
            sets["is_active"] = int(bool(sets["is_active"]))

        def go(conn: sqlite3.Connection) -> Webhook | None:
            if sets:
                assignments = ", ".join(f"{k} = ?" for k in sets)
                conn.execute(
                    f"UPDATE webhooks SET {assignments}, updated_at = ? WHERE id = ? AND project_id = ?",
                    (*sets.values(), time.time(), webhook_id, project_id),
                )
            row = conn.execute(
                "SELECT * FROM webhooks WHERE id = ? AND project_id = ?", (webhook_id, project_id)
            ).fetchone()
            return _webhook(row) if row else None

        return await self._run(go)

    async def delete_webhook(self, project_id: str, webhook_id: int) -> bool:
        def go(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM webhooks WHERE id = ? AND project_id = ?", (webhook_id, project_id)
            )
            return cur.rowcount > 0

        return await self._run(go)

    async def log_delivery(self, delivery: Delivery) -> None:
        await self._run(
            lambda c: c.execute(
                "INSERT INTO webhook_deliveries "
                "(webhook_id, job_id, attempt, status_code, error, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    delivery.webhook_id,
                    delivery.job_id,
                    delivery.attempt,
                    delivery.status_code,
                    delivery.error,
                    delivery.created_at,
                ),
            )
        )

    async def list_deliveries(self, webhook_id: int) -> list[Delivery]:
        def go(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(
                "SELECT * FROM webhook_deliveries WHERE webhook_id = ? ORDER BY id", (webhook_id,)
            ).fetchall()
            return [
                Delivery(
                    r["webhook_id"], r["job_id"], r["attempt"], r["status_code"], r["error"], r["created_at"]
                )
                for r in rows
            ]

        return await self._run(go)

    # -- feedback and exports ------------------------------------------------------------------
    async def add_feedback(
        self, project_id: str, memory_id: str, feedback: str | None, reason: str | None
    ) -> dict[str, Any]:
        feedback_id = str(uuid.uuid4())
        await self._run(
            lambda c: c.execute(
                "INSERT INTO feedback VALUES (?, ?, ?, ?, ?, ?)",
                (feedback_id, project_id, memory_id, feedback, reason, time.time()),
            )
        )
        return {"id": feedback_id, "memory_id": memory_id, "feedback": feedback, "feedback_reason": reason}

    async def create_export(
        self, project_id: str, schema: Any, filters: dict[str, Any], result: Any
    ) -> Export:
        export = Export(str(uuid.uuid4()), project_id, "COMPLETED", schema, filters, result, time.time())
        await self._run(
            lambda c: c.execute(
                "INSERT INTO exports VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    export.id,
                    project_id,
                    export.status,
                    json.dumps(schema),
                    json.dumps(filters),
                    json.dumps(result),
                    export.created_at,
                ),
            )
        )
        return export

    async def get_export(self, project_id: str, export_id: str | None) -> Export | None:
        def go(conn: sqlite3.Connection) -> Export | None:
            if export_id is None:
                row = conn.execute(
                    "SELECT * FROM exports WHERE project_id = ? ORDER BY created_at DESC LIMIT 1",
                    (project_id,),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT * FROM exports WHERE id = ? AND project_id = ?", (export_id, project_id)
                ).fetchone()
            if row is None:
                return None
            return Export(
                row["id"],
                row["project_id"],
                row["status"],
                json.loads(row["schema"] or "null"),
                json.loads(row["filters"]),
                json.loads(row["result"] or "null"),
                row["created_at"],
            )

        return await self._run(go)

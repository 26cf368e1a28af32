"""``Store.restore`` for the PostgreSQL store: one exported memory written back exactly as it was."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from engram.stores.postgres import tokens
from engram.stores.postgres.connection import PostgresConnection
from engram.stores.postgres.rows import digest
from engram.types import RestoredMemory


class MemoryRestore(PostgresConnection):
    """Mixed into :class:`~engram.stores.postgres.PostgresStore`."""

    async def restore(self, namespace: str, memory: RestoredMemory) -> bool:
        self._check_dim(memory.vector, "vector")
        return await self._write(namespace, lambda conn: self._restore_tx(conn, namespace, memory))

    async def _restore_tx(self, conn: Any, namespace: str, memory: RestoredMemory) -> bool:
        s, rec = self._s, memory.record
        cur = await conn.execute(f"SELECT 1 FROM {s}.memories WHERE id = %s FOR UPDATE", (rec.id,))
        if await cur.fetchone() is not None:
            return False
        async with conn.cursor() as c:
            await c.executemany(
                f"INSERT INTO {s}.messages (id, namespace, user_id, agent_id, app_id, run_id, scope_key, "
                "role, name, content, content_hash, observed_at, created_at) "
                "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (id) DO NOTHING",
                [(m.id, namespace, *m.scope.as_tuple(), m.scope.key(), m.role, m.name, m.content,
                  digest(m.content), m.observed_at, m.created_at) for m in memory.messages],
            )  # fmt: skip
        await conn.execute(
            f"INSERT INTO {s}.memories (id, namespace, user_id, agent_id, app_id, run_id, scope_key, text, "
            "hash, actor_id, role, metadata, metadata_text, created_at, updated_at, observed_at, expires_at, "
            "superseded_by, valid_until, embedding, tsv, doc_len) VALUES "
            "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s::jsonb,%s,%s,%s,%s,%s,%s,%s,%s,%s::tsvector,%s)",
            (rec.id, namespace, *rec.scope.as_tuple(), rec.scope.key(), rec.text, rec.hash, rec.actor_id,
             rec.role, json.dumps(rec.metadata), json.dumps(rec.metadata), rec.created_at, rec.updated_at,
             rec.observed_at, rec.expires_at, rec.superseded_by, rec.valid_until,
             np.asarray(memory.vector, dtype=np.float32), *tokens.document(rec.text, len(rec.scope.given()))),
        )  # fmt: skip
        async with conn.cursor() as c:
            await c.executemany(
                f"INSERT INTO {s}.memory_sources (memory_id, message_id) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                [(rec.id, m.id) for m in memory.messages],
            )
            await c.executemany(
                f"INSERT INTO {s}.history (id, namespace, memory_id, event, old_memory, new_memory, "
                "created_at, actor_id, role, details) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s::jsonb)",
                [(h.id, namespace, rec.id, h.event, h.old_memory, h.new_memory, h.created_at, h.actor_id,
                  h.role, json.dumps(h.details)) for h in memory.history],
            )  # fmt: skip
        return True

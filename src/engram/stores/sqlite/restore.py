"""``Store.restore`` for the SQLite store: one exported memory written back exactly as it was."""

from __future__ import annotations

import json

import numpy as np

from engram.stores.sqlite.rows import content_digest, scope_tokens
from engram.stores.sqlite.sql_filters import iso
from engram.stores.sqlite.writes import MemoryWrites
from engram.types import RestoredMemory


class MemoryRestore(MemoryWrites):
    """Mixed into :class:`SQLiteStore` (with the writes it builds on)."""

    async def restore(self, namespace: str, memory: RestoredMemory) -> bool:
        self._check_dim(memory.vector, "vector")
        return await self._run(self._restore_sync, namespace, memory)

    def _restore_sync(self, namespace: str, memory: RestoredMemory) -> bool:
        rec = memory.record
        with self._write() as (conn, _):
            if conn.execute("SELECT 1 FROM memories WHERE id = ?", (rec.id,)).fetchone():
                return False
            conn.executemany(
                "INSERT OR IGNORE INTO messages (id, namespace, user_id, agent_id, app_id, run_id, "
                "scope_key, role, name, content, content_hash, observed_at, created_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (m.id, namespace, *m.scope.as_tuple(), m.scope.key(), m.role, m.name, m.content,
                     content_digest(m.content), iso(m.observed_at), iso(m.created_at))
                    for m in memory.messages
                ],
            )  # fmt: skip
            tokens = scope_tokens(namespace, rec.scope)
            cursor = conn.execute(
                "INSERT INTO memories (id, namespace, user_id, agent_id, app_id, run_id, scope_key, text, "
                "hash, actor_id, role, metadata, created_at, updated_at, observed_at, expires_at, "
                "superseded_by, valid_until, scope_tokens) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (rec.id, namespace, *rec.scope.as_tuple(), rec.scope.key(), rec.text, rec.hash, rec.actor_id,
                 rec.role, json.dumps(rec.metadata), iso(rec.created_at),
                 iso(rec.updated_at) if rec.updated_at else None, iso(rec.observed_at),
                 rec.expires_at.isoformat() if rec.expires_at else None, rec.superseded_by,
                 iso(rec.valid_until) if rec.valid_until else None, tokens),
            )  # fmt: skip
            seq = cursor.lastrowid
            conn.execute(
                "INSERT INTO vectors (seq, embedding) VALUES (?, ?)",
                (seq, np.asarray(memory.vector, dtype=np.float32).tobytes()),
            )
            conn.execute(
                "INSERT INTO memories_fts (rowid, text, scope_tokens) VALUES (?, ?, ?)",
                (seq, rec.text, tokens),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO memory_sources (memory_id, message_id) VALUES (?, ?)",
                [(rec.id, m.id) for m in memory.messages],
            )
            conn.executemany(
                "INSERT INTO history (id, namespace, memory_id, event, old_memory, new_memory, created_at, "
                "actor_id, role, details) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (h.id, namespace, rec.id, h.event, h.old_memory, h.new_memory, iso(h.created_at),
                     h.actor_id, h.role, json.dumps(h.details))
                    for h in memory.history
                ],
            )  # fmt: skip
        self._cache.clear()
        return True

"""Re-embedding a store with another embedder, in SQL written once for every dialect.

While it runs, the ``meta`` row ``reembed`` holds the target embedder and the ``seq`` of the last memory
done (JSON). Every batch commits its vectors together with that cursor, so an interrupted run loses at
most the batch in flight and the next run resumes after the cursor. While the row exists the store's
vectors are a mix of two embedders, and :func:`~engram.stores.sql.dialect.check_embedder` refuses to
open it with either; the last transaction records the new embedder and removes the row.

The statements use the generic text of :class:`~engram.stores.sql.db.Db` (``%s``, ``{s}.``); what
differs by dialect (writing vectors, the declared vector size) is on the session.
"""

from __future__ import annotations

import json

from engram.errors import EmbedderMismatchError
from engram.stores.sql.dialect import Session
from engram.types import EmbedderInfo, Vector

#: The ``meta`` keys a store reads when it opens (the embedder, and an unfinished re-embed).
META_KEYS = "('embedder', 'dim', 'reembed')"


def _same(name: str, dim: int | str, embedder: EmbedderInfo) -> bool:
    return name == embedder.name and int(dim) == embedder.dim


def plan(stored: dict[str, str], embedder: EmbedderInfo) -> int | None:
    """The ``seq`` after which to (re)start, or None when the store already holds ``embedder``'s vectors
    (or was just created for it). An unfinished re-embed to another embedder must be finished first."""
    if "reembed" in stored:
        target = json.loads(stored["reembed"])
        if not _same(target["embedder"], target["dim"], embedder):
            raise EmbedderMismatchError(
                f"An interrupted re-embed of this store to {target['embedder']!r} ({target['dim']} "
                f"dimensions) must be finished first: run it again with that embedder, then re-embed "
                f"to {embedder.name!r}.",
                details={"reembed": target, "configured": {"embedder": embedder.name, "dim": embedder.dim}},
            )
        return int(target["after"])
    if not stored or _same(stored["embedder"], stored["dim"], embedder):
        return None
    return 0


async def _mark(s: Session, embedder: EmbedderInfo, after: int) -> None:
    value = json.dumps({"embedder": embedder.name, "dim": embedder.dim, "after": after})
    await s.db().execute(
        "INSERT INTO {s}.meta (key, value) VALUES ('reembed', %s) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (value,),
    )


async def start(s: Session, embedder: EmbedderInfo, after: int, stored_dim: int) -> None:
    """Record the re-embed (the store now refuses normal opens); free the vector size if it changes."""
    await _mark(s, embedder, after)
    if stored_dim != embedder.dim:
        await s.type_vectors(None)


async def counts(s: Session, after: int) -> tuple[int, int]:
    """(memories already done, all memories): deleted ones too, their rows keep a vector."""
    rows = await s.db().rows(
        "SELECT count(*), COALESCE(sum(CASE WHEN seq <= %s THEN 1 ELSE 0 END), 0) FROM {s}.memories",
        (after,),
    )
    return int(rows[0][1]), int(rows[0][0])


async def batch(s: Session, after: int, limit: int) -> list[tuple[int, str]]:
    """The next ``limit`` memories after ``after``: (seq, text), in ``seq`` order."""
    rows = await s.db().rows(
        "SELECT seq, text FROM {s}.memories WHERE seq > %s ORDER BY seq LIMIT %s", (after, limit)
    )
    return [(int(r[0]), str(r[1])) for r in rows]


async def write(s: Session, embedder: EmbedderInfo, vectors: list[tuple[int, Vector]]) -> None:
    """One batch's vectors and the cursor past them (one transaction)."""
    await s.set_vectors(vectors)
    await _mark(s, embedder, vectors[-1][0])


async def finish(s: Session, embedder: EmbedderInfo) -> None:
    """Declare the vector size again and record ``embedder`` as the one that filled the store."""
    await s.type_vectors(embedder.dim)
    db = s.db()
    await db.execute("UPDATE {s}.meta SET value = %s WHERE key = 'embedder'", (embedder.name,))
    await db.execute("UPDATE {s}.meta SET value = %s WHERE key = 'dim'", (str(embedder.dim),))
    await db.execute("DELETE FROM {s}.meta WHERE key = 'reembed'")

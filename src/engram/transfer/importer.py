"""Import: memories written back with their ids, dates, history and sources; safe to run again.

A memory whose id is already there unchanged is skipped; one whose id is taken by something else is
reported as a conflict and never overwritten. Vectors are recomputed with the configured embedder
unless the export carries vectors of that very embedder.
"""

from __future__ import annotations

import json
import struct
import tempfile
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from engram.errors import ValidationError
from engram.interfaces import Restored
from engram.memory import AsyncMemory
from engram.transfer.format import check_header, loads, memory_dict, parse_memory
from engram.types import RestoredMemory, Vector

BATCH = 2000  # memories per Store.restore_many batch
EMBED_BATCH = 64  # texts per embedder call
_TAKEN = "the id is taken (by a deleted memory or in another namespace)"
Progress = Callable[[int, int | None], None]  # (done, total if known)


@dataclass
class ImportReport:
    """What an import did: counts, and why each conflicting memory was left alone."""

    imported: int = 0
    skipped: int = 0
    conflicts: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"imported": self.imported, "skipped": self.skipped, "conflicts": self.conflicts}


@dataclass(slots=True)
class Incoming:
    """One memory to import; ``has_vector`` says its vector can be used as is."""

    memory: RestoredMemory
    has_vector: bool = False


def _tally(item: RestoredMemory, outcome: Restored, report: ImportReport) -> None:
    """Count one memory's outcome: written, skipped (the same memory is stored) or a conflict."""
    rec, stored = item.record, outcome.stored
    if outcome.written:
        report.imported += 1
    elif outcome.conflict is not None:
        report.conflicts.append({"id": rec.id, "reason": outcome.conflict})
    elif stored is None:
        report.conflicts.append({"id": rec.id, "reason": _TAKEN})
    elif memory_dict(stored.record, stored.history, stored.messages, None) == memory_dict(
        rec, item.history, item.messages, None
    ):
        report.skipped += 1
    else:
        report.conflicts.append({"id": rec.id, "reason": "a different memory with this id is stored"})


async def import_memories(
    memory: AsyncMemory,
    items: AsyncIterable[Incoming] | Iterable[Incoming],
    *,
    total: int | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Restore ``items`` in order through :meth:`Store.restore_many` (in batches; one transaction
    per memory unless the store writes batches at once), embedding those without a usable vector."""
    await memory.open()
    report = ImportReport()
    sent: deque[list[Incoming]] = deque()
    done = 0
    async for outcomes in memory.store.restore_many(memory.namespace, _embedded(memory, items, sent)):
        batch = sent.popleft()
        for incoming, outcome in zip(batch, outcomes, strict=True):
            _tally(incoming.memory, outcome, report)
        done += len(batch)
        if progress is not None:
            progress(done, total)
    return report


async def _embedded(
    memory: AsyncMemory, items: AsyncIterable[Incoming] | Iterable[Incoming], sent: deque[list[Incoming]]
) -> AsyncIterator[list[RestoredMemory]]:
    """``items`` in batches, each memory with its vector (computed ``EMBED_BATCH`` at a time when
    missing); each batch is also appended to ``sent``."""
    async for batch in _batches(items):
        todo = [i.memory for i in batch if not i.has_vector]
        for start in range(0, len(todo), EMBED_BATCH):
            part = todo[start : start + EMBED_BATCH]
            vectors = await memory.embedder.embed([m.record.text for m in part])
            for restored, vector in zip(part, vectors, strict=True):
                restored.vector = vector
        sent.append(batch)
        yield [i.memory for i in batch]


async def _each(items: AsyncIterable[Incoming] | Iterable[Incoming]) -> AsyncIterator[Incoming]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


async def _batches(items: AsyncIterable[Incoming] | Iterable[Incoming]) -> AsyncIterator[list[Incoming]]:
    batch: list[Incoming] = []
    async for item in _each(items):
        batch.append(item)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


# -- Engram export files ------------------------------------------------------------------------------
def _lines(path: Path, *, vectors: bool = True) -> Iterator[tuple[int, Any]]:
    """(line number, JSON) of each non-blank line (``vectors=False``: memory lines' vectors left out)."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as e:
        raise ValidationError(f"cannot read {path}: {e.strerror}", field="file") from e
    with handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                yield number, loads(text, vector=vectors)
            except json.JSONDecodeError as e:
                raise ValidationError(f"{path}: line {number} is not JSON: {e.msg}", field="file") from e
            except ValueError as e:
                raise ValidationError(f"{path}: line {number}.vector holds a malformed number: {e}",
                                      field="vector") from e  # fmt: skip


def check_file(path: Path, vectors: IO[bytes] | None = None) -> tuple[dict[str, Any], int]:
    """Validate a whole export file before anything is written: its header and the memory count.
    ``vectors``: where to keep each memory's vector (see :func:`_kept_vectors`), so that the import
    need not parse them again."""
    lines = _lines(path)
    first = next(lines, None)
    if first is None or not isinstance(first[1], dict):
        raise ValidationError(f"{path} is empty or has no header line", field="file")
    head = check_header(first[1])
    count = 0
    for number, obj in lines:
        restored, has_vector = parse_memory(obj, number)
        if vectors is not None:
            vector = np.ascontiguousarray(restored.vector, dtype=np.float32) if has_vector else None
            vectors.write(struct.pack("<i", -1 if vector is None else len(vector)))
            vectors.write(b"" if vector is None else vector.tobytes())
        count += 1
    return head, count


def _kept_vectors(kept: IO[bytes]) -> Iterator[Vector | None]:
    """The vectors :func:`check_file` kept, in line order (None: that line had none)."""
    kept.seek(0)
    while size := kept.read(4):
        (n,) = struct.unpack("<i", size)
        yield None if n < 0 else np.frombuffer(bytearray(kept.read(4 * n)), dtype=np.float32)


def _file_items(path: Path, kept: IO[bytes] | None, dim: int) -> Iterator[Incoming]:
    """The file's memories; with ``kept`` (their vectors, usable when of size ``dim``) the lines'
    vectors are not parsed again."""
    lines = _lines(path, vectors=False)
    next(lines)
    vectors = _kept_vectors(kept) if kept is not None else None
    for number, obj in lines:
        restored, _ = parse_memory(obj, number)
        vector = next(vectors) if vectors is not None else None
        if vector is not None and vector.shape == (dim,):
            restored.vector = vector
        yield Incoming(restored, restored.vector.shape == (dim,))


async def import_file(memory: AsyncMemory, path: Path, *, progress: Progress | None = None) -> ImportReport:
    """Import an ``engram export`` file into ``memory``'s namespace."""
    with tempfile.TemporaryFile() as kept:
        head, count = check_file(path, kept)
        await memory.open()
        info = memory.embedder.info
        same_embedder = head.get("embedder") == {"name": info.name, "dim": info.dim}
        use = same_embedder and bool(head.get("with_vectors"))
        items = _file_items(path, kept if use else None, info.dim)
        return await import_memories(memory, items, total=count, progress=progress)

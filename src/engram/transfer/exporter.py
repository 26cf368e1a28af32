"""Export: every memory of a namespace (or of the scope and filters given), oldest first, as JSON Lines.

Oldest first (the reverse of ``get_all``'s order) so that importing the lines in file order stores
them in their original order, and exporting again gives the same lines.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from engram.filters import split_scope
from engram.memory import AsyncMemory
from engram.transfer.format import dumps, header, memory_dict
from engram.types import MemoryRecord, Scope, Visibility

PAGE = 500
Progress = Callable[[int, int], None]  # (done, total)


async def walk_records(
    memory: AsyncMemory, filters: dict[str, Any] | None = None, *, everything: bool = True
) -> AsyncIterator[tuple[MemoryRecord, int]]:
    """Each memory matching ``filters`` (no scope needed: all of the namespace), oldest first, with the
    total count. ``everything`` includes superseded and expired memories."""
    scope, tree = split_scope(filters, kwargs_scope=Scope())
    await memory.open()
    store, namespace = memory.store, memory.namespace
    visibility = Visibility(include_superseded=everything, show_expired=everything)
    first = await store.list_memories(namespace, scope, tree, visibility, limit=1)
    end = first.total
    while end > 0:
        start = max(0, end - PAGE)
        page = await store.list_memories(namespace, scope, tree, visibility, limit=end - start, offset=start)
        for record in reversed(page.records):
            yield record, first.total
        end = start


async def memory_line(memory: AsyncMemory, record: MemoryRecord, *, with_vector: bool) -> dict[str, Any]:
    """The export line of one stored memory (its history and source messages read from the store)."""
    store, namespace = memory.store, memory.namespace
    history = await store.history(namespace, record.id)
    messages = await store.messages_for(namespace, record.id)
    vector = (await store.vectors_for(namespace, [record.id])).get(record.id) if with_vector else None
    return memory_dict(record, history, messages, vector)


async def export_ids(memory: AsyncMemory, ids: list[str]) -> list[dict[str, Any]]:
    """The export lines of the memories with these ids, in the order given (missing ids left out)."""
    await memory.open()
    lines = []
    for memory_id in ids:
        record = await memory.store.get(memory.namespace, memory_id)
        if record is not None:
            lines.append(await memory_line(memory, record, with_vector=False))
    return lines


async def export_lines(
    memory: AsyncMemory,
    *,
    filters: dict[str, Any] | None = None,
    with_vectors: bool = False,
    progress: Progress | None = None,
) -> AsyncIterator[str]:
    """The header line, then one line per memory (without newlines)."""
    await memory.open()
    info = memory.embedder.info
    embedder = {"name": info.name, "dim": info.dim}
    yield dumps(header(memory.namespace, filters, embedder, with_vectors))
    done = 0
    async for record, total in walk_records(memory, filters):
        yield dumps(await memory_line(memory, record, with_vector=with_vectors))
        done += 1
        if progress is not None:
            progress(done, total)


async def export_to(
    memory: AsyncMemory,
    write: Callable[[str], Any],
    *,
    filters: dict[str, Any] | None = None,
    with_vectors: bool = False,
    progress: Progress | None = None,
) -> int:
    """Write the export through ``write`` (one call per line, newline included); returns the memories."""
    count = -1
    async for line in export_lines(memory, filters=filters, with_vectors=with_vectors, progress=progress):
        write(line + "\n")
        count += 1
    return count


async def export_memories(
    memory: AsyncMemory, filters: dict[str, Any] | None = None, *, everything: bool = False
) -> list[dict[str, Any]]:
    """Memory lines in a list, oldest first; current ones only unless ``everything`` (for the server's
    ``/v1/exports/``)."""
    return [
        await memory_line(memory, record, with_vector=False)
        async for record, _ in walk_records(memory, filters, everything=everything)
    ]

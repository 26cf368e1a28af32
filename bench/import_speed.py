"""``engram import`` speed into PostgreSQL: ``python -m bench.import_speed [--n 100000] [--pg-url URL]``.

Writes an ``engram export --with-vectors`` file of ``--n`` synthetic memories (bench.speed's
:class:`~bench.speed.Synth`: realistic words, MiniLM vectors; 1,000 memories per user, each with its
``ADD`` history entry and the message it came from), then times :func:`engram.transfer.import_file`
into an empty schema: the COPY path, indexes (HNSW included) built after the load. Without
``--pg-url`` a throw-away server with bench.speed's durable settings is brought up and deleted.

Reported (and written to ``bench/results/import-speed.json``): the validation pass over the file,
the load (parsing and COPY, until the last batch's progress), the index build after it, end to end,
each in seconds and memories/s, and the CPU seconds per memory of this process and of PostgreSQL
(so a rate on a shared machine can be told from an idle one's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS, load_locomo
from bench.pg_profile import _cpu_seconds
from bench.speed import BENCH_PG_SETTINGS, Synth, base_vectors

PER_USER = 1000
STEP = 10_000  # memories synthesised at a time


def write_export(path: Path, n: int, synth: Synth) -> int:
    """An export file of ``n`` synthetic memories with vectors; returns its size in bytes."""
    from engram.embedders.minilm import MiniLMEmbedder
    from engram.transfer.format import dumps, header, memory_dict
    from engram.types import HistoryEntry, MemoryRecord, Scope, StoredMessage, text_hash

    info = MiniLMEmbedder().info  # the model loads on first use: not here
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with path.open("w", encoding="utf-8") as out:
        out.write(dumps(header("bench", None, {"name": info.name, "dim": info.dim}, True)) + "\n")
        for first in range(0, n, STEP):
            count = min(STEP, n - first)
            for i, (text, vector) in enumerate(zip(synth.texts(count), synth.vectors(count), strict=True)):
                at = start + timedelta(seconds=first + i)
                scope = Scope(user_id=f"user-{(first + i) // PER_USER:05d}")
                rec = MemoryRecord(str(uuid.uuid4()), text, text_hash(text), scope, None, None,
                                   {"n": first + i}, at, None, at)  # fmt: skip
                added = HistoryEntry(str(uuid.uuid4()), rec.id, "ADD", None, text, at)
                said = StoredMessage(str(uuid.uuid4()), scope, "user", text, None, at, at)
                out.write(dumps(memory_dict(rec, [added], [said], vector)) + "\n")
    return path.stat().st_size


async def timed_import(url: str, schema: str, path: Path, n: int) -> dict[str, float]:
    """Import ``path`` into a new ``schema``; the phases' seconds."""
    from engram import AsyncMemory
    from engram.embedders.minilm import MiniLMEmbedder
    from engram.stores.postgres import PostgresStore
    from engram.transfer.importer import check_file, import_file

    t0 = time.perf_counter()
    check_file(path)  # the pass import_file makes first, timed on its own
    validate = time.perf_counter() - t0
    engine = AsyncMemory(store=PostgresStore(url=url, schema_name=schema), embedder=MiniLMEmbedder())
    await engine.open()
    last = [0.0]

    def progress(done: int, total: int | None) -> None:
        last[0] = time.perf_counter()
        if done == total or done % 20_000 == 0:
            print(f"[import] {done:,} / {total:,} in {last[0] - t1:.0f} s", file=sys.stderr)

    t1 = time.perf_counter()
    try:
        report = await import_file(engine, path, progress=progress)
    finally:
        await engine.close()
    end = time.perf_counter()
    assert report.imported == n and not report.conflicts, report.as_dict()
    return {"validate_s": validate, "load_s": last[0] - t1 - validate, "index_s": end - last[0],
            "total_s": end - t1}  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from tests._pg import start_server, stop_server

    convs = load_locomo()
    turns = [t.content for c in convs for t in c.turns]
    tv, _ = base_vectors(turns, [q.question for c in convs for q in c.questions])
    server = None if args.pg_url else start_server(settings=BENCH_PG_SETTINGS)
    url = args.pg_url or server.url  # type: ignore[union-attr]
    try:
        with tempfile.TemporaryDirectory(prefix="engram-import-speed-") as tmp:
            path = Path(tmp) / "export.jsonl"
            size = write_export(path, args.n, Synth(turns, tv))
            cpu0 = _cpu_seconds(server.datadir if server else None)
            phases = asyncio.run(timed_import(url, f"import_{uuid.uuid4().hex[:8]}", path, args.n))
            cpu1 = _cpu_seconds(server.datadir if server else None)
    finally:
        if server is not None:
            stop_server(server.datadir)
    client, db = (b - a for a, b in zip(cpu0, cpu1, strict=True))
    out: dict[str, Any] = {"memories": args.n, "file_mb": round(size / 1e6)}
    for phase, seconds in phases.items():
        out[phase] = round(seconds, 1)
        out[phase.replace("_s", "_per_s")] = round(args.n / seconds) if seconds > 0 else None
    out["client_cpu_ms_per_memory"] = round(client * 1000 / args.n, 3)
    out["server_cpu_ms_per_memory"] = round(db * 1000 / args.n, 3) if server else None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.import_speed", description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="memories in the export file")
    parser.add_argument("--pg-url", default=None, help="an existing PostgreSQL with pgvector")
    parser.add_argument("--name", default="import-speed")
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Query plans of the PostgreSQL store's search: ``python -m bench.pg_profile [--load] [--pg-url URL]``.

Loads (``--load``, with the COPY bulk loader) three schemas of synthetic memories like bench.speed's:
``prof_1k`` (one scope of 1,000), ``prof_100k`` (one scope of 100,000), ``prof_1m`` (1,000,000
over 1,000 scopes of 1,000) and, only when asked for, ``prof_10m`` (10,000,000 over 10,000 scopes),
then runs store-only searches (``hybrid_search`` with precomputed query
vectors) in each case twice: once through connections that log every statement's plan with
``auto_explain`` (ANALYZE, BUFFERS) into the server log, once plainly for latencies. Writes
``bench/results/pg-profile.json`` (latencies, statements and round trips per search, load rates)
and ``pg-profile-plans.txt`` (the plans of one search per case).

Without ``--pg-url`` a throw-away server is brought up (bench.speed's durable settings) and kept
in ``--datadir`` between runs (``--stop`` deletes it), so the load is done once and the profile
rerun after each change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from bench.common import REPO, RESULTS, load_locomo
from bench.speed import BENCH_PG_SETTINGS, Synth, base_vectors

CASES = {
    "1k": ("prof_1k", 1000, 1),
    "100k": ("prof_100k", 100_000, 1),
    "1m": ("prof_1m", 1_000_000, 1000),
    "10m": ("prof_10m", 10_000_000, 10_000),  # for the sizing plan; ~45 GB on disk, loaded once
}
EXPLAIN = (
    "-c session_preload_libraries=auto_explain -c auto_explain.log_min_duration=0 "
    "-c auto_explain.log_analyze=on -c auto_explain.log_buffers=on -c auto_explain.log_timing=on "
    "-c auto_explain.log_nested_statements=on"
)


def _server(args: argparse.Namespace) -> tuple[str, Path | None]:
    if args.pg_url:
        return args.pg_url, None
    sys.path.insert(0, str(REPO))
    from tests._pg import start_server

    datadir = Path(args.datadir)
    state = datadir / "url"
    if state.exists():  # started by an earlier run and still up
        return state.read_text().strip(), datadir
    server = start_server(datadir, settings=BENCH_PG_SETTINGS)
    state.write_text(server.url)
    return server.url, datadir


def _store(url: str, schema: str, options: str = "", **settings: Any) -> Any:
    from engram.stores.postgres import PostgresStore

    if options:
        url += ("&" if "?" in url else "?") + "options=" + quote(options)
    return PostgresStore(url=url, schema_name=schema, max_pool_size=4, **settings)


async def load(url: str, datadir: Path | None, synth: Synth, case: str) -> dict[str, Any]:
    """Drop and refill one case's schema with the COPY loader; returns its timings."""
    import psycopg

    from engram.embedders.minilm import MiniLMEmbedder
    from engram.stores.postgres.bulk import copy_memories
    from engram.types import NewMemory, Scope, text_hash

    schema, n, scopes = CASES[case]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    # 1M, 10M: scopes of 1,000 are searched exactly, so no HNSW index (its build is timed at 100k)
    store = _store(url, schema, hnsw=scopes == 1)
    await store.open(MiniLMEmbedder().info)
    per = n // scopes
    synth.rng = np.random.default_rng(11)

    def memories() -> Any:
        step = 50_000
        for start in range(0, n, step):
            count = min(step, n - start)
            vectors, texts = synth.vectors(count), synth.texts(count)
            for i in range(count):
                user = f"scope-{(start + i) // per:04d}"
                yield NewMemory(
                    str(uuid.uuid4()), texts[i], text_hash(texts[i]), Scope(user_id=user), vectors[i]
                )

    t0 = time.perf_counter()
    cpu0 = _cpu_seconds(datadir)
    last = [t0]

    def progress(done: int) -> None:
        if time.perf_counter() - last[0] > 10 or done == n:
            last[0] = time.perf_counter()
            print(f"[profile] {case}: {done:,} copied, {done / (last[0] - t0):,.0f}/s", file=sys.stderr)

    out = await copy_memories(store, "bench", memories(), progress=progress)
    wall = time.perf_counter() - t0
    client_cpu, server_cpu = (b - a for a, b in zip(cpu0, _cpu_seconds(datadir), strict=True))
    await store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {schema}.memories")
        size = conn.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace s "
            "ON s.oid = c.relnamespace WHERE s.nspname = %s AND c.relkind IN ('r', 'i')",
            (schema,),
        ).fetchall()
    return {
        "memories": out.loaded,
        "copy_s": round(out.copy_seconds, 1),
        "index_s": round(out.index_seconds, 1),
        "wall_s": round(wall, 1),
        "memories_per_s_copy": round(out.loaded / out.copy_seconds),
        "memories_per_s_total": round(out.loaded / wall),
        # CPU spent, so the rate on an idle machine can be told from the rate on a shared one
        "client_cpu_ms_per_memory": round(client_cpu * 1000 / n, 3),
        "server_cpu_ms_per_memory": round(server_cpu * 1000 / n, 3),
        "relation_bytes": {str(name): int(b) for name, b in size},
    }


def _cpu_seconds(datadir: Path | None) -> tuple[float, float]:
    """(this process's CPU seconds, the throw-away server's in ``datadir``: its postmaster with its
    reaped children, plus its live children); the second is 0 with ``--pg-url``."""
    import os
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    pid_file = datadir / "data" / "postmaster.pid" if datadir else None
    if pid_file is None or not pid_file.exists():
        return usage.ru_utime + usage.ru_stime, 0.0
    master = pid_file.read_text().split()[0]
    tick = os.sysconf("SC_CLK_TCK")
    server = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if proc.name == master or fields[1] == master:  # fields[1]: the parent's pid
            server += sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
    return usage.ru_utime + usage.ru_stime, server


async def searches(url: str, case: str, queries: list[str], qv: np.ndarray, explain: bool) -> list[float]:
    from engram.config import RetrievalConfig
    from engram.embedders.minilm import MiniLMEmbedder
    from engram.retrieval import SearchRequest, hybrid_search
    from engram.types import Scope, Visibility

    schema, _, scopes = CASES[case]
    store = _store(url, schema, EXPLAIN if explain else "")
    await store.open(MiniLMEmbedder().info)
    config = RetrievalConfig()
    times = []
    try:
        for i, q in enumerate(queries):
            # ten scopes in turn (each searched again and again, as a busy user's would be)
            user = "scope-0000" if explain else f"scope-{(i % 10) * 97 % scopes:04d}"
            request = SearchRequest("bench", Scope(user_id=user), None, Visibility(), q, 20)
            t0 = time.perf_counter()
            await hybrid_search(store, request, qv[i], config)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        await store.close()
    return times


def _plans(log: Path, start: int) -> list[str]:
    """auto_explain entries written since byte ``start`` of the server log."""
    text = log.read_bytes()[start:].decode(errors="replace")
    entries = re.split(r"\n(?=\S+ \S+ \S+ \[\d+\] LOG:)", text)
    opening = ("pg_advisory", "schema_migrations", ".meta", "pg_indexes", "pg_type")  # store.open()
    return [e for e in entries if "duration:" in e and "plan:" in e and not any(o in e for o in opening)]


def profile(url: str, datadir: Path | None, case: str, queries: list[str], qv: np.ndarray) -> dict[str, Any]:
    log = (datadir / "server.log") if datadir else None
    asyncio.run(searches(url, case, queries[:5], qv[:5], explain=False))  # warm the cache
    start = log.stat().st_size if log else 0
    # The same query twice on one store: the first search of a scope in a process goes through the
    # GIN index (and learns the scope's size), the second shows the steady state.
    asyncio.run(searches(url, case, queries[:1] * 2, np.stack([qv[0], qv[0]]), explain=True))
    plans = _plans(log, start) if log else []
    times = asyncio.run(searches(url, case, queries, qv, explain=False))
    ms = np.array(times)
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "statements_logged_for_two_searches": len(plans),
        "plans": plans,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_profile", description=__doc__)
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--datadir", default="/tmp/engram-pg-profile")
    parser.add_argument("--load", default="", help="cases to (re)load, e.g. 1k,100k,1m")
    parser.add_argument("--cases", default="1k,100k,1m")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--name", default="pg-profile")
    parser.add_argument("--stop", action="store_true", help="stop and delete the throw-away server")
    args = parser.parse_args(argv)
    if args.stop:
        sys.path.insert(0, str(REPO))
        from tests._pg import stop_server

        stop_server(Path(args.datadir))
        return 0
    url, datadir = _server(args)
    convs = load_locomo()
    turns = [t.content for c in convs for t in c.turns]
    questions = [q.question for c in convs for q in c.questions]
    tv, qv_all = base_vectors(turns, questions)
    step = max(1, len(questions) // args.queries)
    queries, qv = questions[::step][: args.queries], qv_all[::step][: args.queries]
    out_path = RESULTS / f"{args.name}.json"
    result: dict[str, Any] = json.loads(out_path.read_text()) if out_path.exists() else {}
    for case in [c for c in args.load.split(",") if c]:
        result.setdefault("load", {})[case] = asyncio.run(load(url, datadir, Synth(turns, tv), case))
        print(f"[profile] load {case}: {json.dumps(result['load'][case])}", file=sys.stderr)
        out_path.write_text(json.dumps(result, indent=1) + "\n")  # a long load is kept if a later step fails
    plans_text = []
    for case in [c for c in args.cases.split(",") if c]:
        prof = profile(url, datadir, case, queries, qv)
        plans_text.append(f"===== {case} =====\n" + "\n\n".join(prof.pop("plans")))
        result.setdefault("search", {})[case] = prof
        print(f"[profile] search {case}: {json.dumps(prof)}", file=sys.stderr)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{args.name}-plans.txt").write_text("\n\n".join(plans_text) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

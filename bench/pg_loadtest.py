"""Bounded loopback load test: ``python -m bench.pg_loadtest [--requests N] [--pg-url URL]``.

4 ``engram serve`` processes and 2 ``engram worker`` processes share one PostgreSQL (memories and
server state); 1,000 projects each get an API key; client threads send a fixed number of mixed
requests (async ``infer=False`` adds and searches, 40 / 60) to random projects through random
servers, then wait for the queued adds to finish. One "hot" project also receives a burst above the
per-project rate limit, spread over the four servers, to show whether the limit holds across
processes. Reports p50 / p95 per kind, status counts, jobs and memories, in
``bench/results/pg-loadtest.json``. The fake embedder is used (the database, not MiniLM, is under
test). Everything runs on loopback; the sizes are bounded by the arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, RESULTS

SERVERS, WORKERS, SCHEMA = 4, 2, "loadtest"


def _keys(url: str, projects: int) -> list[str]:
    from engram.stores.postgres.service import PostgresServiceState

    async def go() -> list[str]:
        state = PostgresServiceState(url=url, schema_name=SCHEMA)
        await state.open()
        try:
            org = await state.ensure_org("load")
            keys = []
            for i in range(projects):
                project = await state.ensure_project(org.id, f"p{i:04d}")
                keys.append(await state.create_key(project.id))
            return keys
        finally:
            await state.close()

    return asyncio.run(go())


def _jobs(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT status, count(*) FROM {SCHEMA}.jobs GROUP BY status").fetchall()
    return {str(s): int(n) for s, n in rows}


def _client(
    urls: list[str], keys: list[str], jobs: list[tuple[int, str]], out: list[tuple[str, int, float]]
) -> None:
    import httpx

    rng = random.Random(len(jobs))
    clients = [httpx.Client(base_url=u, timeout=60) for u in urls]
    try:
        for project, kind in jobs:
            http = rng.choice(clients)
            auth = {"Authorization": f"Token {keys[project]}"}
            user = f"u{rng.randrange(5)}"
            t0 = time.perf_counter()
            if kind == "search":
                r = http.post(
                    "/v3/memories/search/",
                    json={"query": f"fact about topic {rng.randrange(50)}", "filters": {"user_id": user}},
                    headers=auth,
                )
            else:
                text = f"User {user} of project {project} likes topic {rng.randrange(50)}"
                r = http.post(
                    "/v3/memories/add/",
                    json={"messages": [{"role": "user", "content": text}], "user_id": user, "infer": False},
                    headers=auth,
                )
            out.append((kind, r.status_code, (time.perf_counter() - t0) * 1000))
    finally:
        for c in clients:
            c.close()


def _summary(samples: list[tuple[str, int, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in sorted({s[0] for s in samples}):
        ms = np.array([s[2] for s in samples if s[0] == kind and s[1] == 200])
        statuses = Counter(s[1] for s in samples if s[0] == kind)
        out[kind] = {
            "requests": sum(statuses.values()),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "p95_ms": round(float(np.percentile(ms, 95)), 1) if len(ms) else None,
        }
    return out


def run(args: argparse.Namespace, url: str, home: Path) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "tests" / "server"))
    from srvhelpers import ServerProcess

    settings: dict[str, Any] = {
        "state_backend": "postgres",
        "state_config": {"url": url, "schema_name": SCHEMA},
        "memory_config": {
            "store": {
                "provider": "postgres",
                "config": {"url": url, "schema_name": SCHEMA, "max_pool_size": 4},
            },
            "embedder": {"provider": "fake"},
            "llm_from_env": False,
        },
        "worker_tasks": 0,
        "rate_limit_per_minute": args.rate_limit,
    }
    servers = [ServerProcess(home / f"s{i}", **settings) for i in range(SERVERS)]
    servers[0].start(timeout=120)  # the first one migrates; the others find it done
    for server in servers[1:]:
        server.start(timeout=120)
    keys = _keys(url, args.projects)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "engram.cli", "worker", "--tasks", "4"],
            env=servers[0].env(),
            stdout=open(home / f"worker{i}.log", "wb"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
        )
        for i in range(WORKERS)
    ]
    rng = random.Random(17)
    plan = [
        (rng.randrange(1, args.projects), "add" if rng.random() < 0.4 else "search")
        for _ in range(args.requests)
    ]
    hot = [(0, "search")] * args.hot  # project 0, above its rate limit, through every server
    samples: list[tuple[str, int, float]] = []
    hot_samples: list[tuple[str, int, float]] = []
    urls = [s.url for s in servers]
    try:
        t0 = time.perf_counter()
        threads = [
            threading.Thread(target=_client, args=(urls, keys, plan[c :: args.clients], samples))
            for c in range(args.clients)
        ]
        threads += [
            threading.Thread(target=_client, args=([u], keys, hot[i::SERVERS], hot_samples))
            for i, u in enumerate(urls)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.timeout)
        wall = time.perf_counter() - t0
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and (_jobs(url).get("QUEUED", 0) or _jobs(url).get("RUNNING", 0)):
            time.sleep(0.5)
        drained = time.perf_counter() - t0
    finally:
        for w in workers:
            w.terminate()
            w.wait(30)
        for server in servers:
            server.stop()
    hot_ok = sum(1 for s in hot_samples if s[1] == 200)
    return {
        "servers": SERVERS,
        "workers": WORKERS,
        "projects": args.projects,
        "clients": args.clients,
        "requests": args.requests,
        "requests_wall_s": round(wall, 1),
        "requests_per_s": round(args.requests / wall, 1),
        "all_jobs_done_s": round(drained, 1),
        "results": _summary(samples),
        "jobs": _jobs(url),
        "hot_project": {
            "rate_limit_per_minute": args.rate_limit,
            "requests": args.hot,
            "accepted": hot_ok,
            "rejected_429": sum(1 for s in hot_samples if s[1] == 429),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_loadtest", description=__doc__)
    parser.add_argument("--pg-url", default=None, help="default: a throw-away local PostgreSQL")
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--hot", type=int, default=120, help="burst requests to one project")
    parser.add_argument("--rate-limit", type=int, default=60, help="per-project requests a minute")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--name", default="pg-loadtest")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from bench.speed import BENCH_PG_SETTINGS
    from tests._pg import start_server, stop_server

    server = None if args.pg_url else start_server(settings={**BENCH_PG_SETTINGS, "max_connections": "200"})
    url = args.pg_url or server.url  # type: ignore[union-attr]
    try:
        with tempfile.TemporaryDirectory(prefix="engram-loadtest-") as home:
            result = run(args, url, Path(home))
    finally:
        if server is not None:
            stop_server(server.datadir)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

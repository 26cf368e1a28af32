"""mem0 2.2.1 under test, run by the mem0 venv's python; same JSON-line protocol as _engram_runner.py.

mem0 configuration (written down in docs/benchmarks.md):

    {"vector_store": {"provider": "qdrant", "config": {"collection_name": "bench",
                      "embedding_model_dims": 384, "path": <tmp>/qdrant, "on_disk": False}},
     "embedder": {"provider": "huggingface", "config": {"model": "all-MiniLM-L6-v2",
                  "embedding_dims": 384}},
     "llm": {"provider": "openai", "config": {"api_key": "sk-offline-unused"}},   # never called
     "history_db_path": <tmp>/history.db}

mem0's factory entry for "huggingface" is pointed at :class:`EngramMiniLM`, a small adapter that runs
exactly Engram's default embedder (the same int8 ONNX all-MiniLM-L6-v2 file and tokenizer), so both
systems pay the same embedding cost and the comparison isolates store and search. Everything else is
mem0's default: its local Qdrant store (no fastembed, so its BM25 side is off, as in a default
install), no reranker, search ``threshold`` 0 so that no result is cut (mem0's default is 0.1).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
import time
import traceback
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, os.environ["ENGRAM_SRC"])

from mem0.embeddings.base import EmbeddingBase


class EngramMiniLM(EmbeddingBase):  # type: ignore[misc]
    """mem0 embedder running Engram's default model; an opt-in cache lets a timed call skip embedding."""

    cache: dict[str, list[float]] = {}  # noqa: RUF012 - shared by the runner
    enabled = False
    _model: Any = None

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        if EngramMiniLM._model is None:
            from engram.embedders.minilm import MiniLMEmbedder

            EngramMiniLM._model = MiniLMEmbedder()
            EngramMiniLM._model.load()

    def embed(self, text: Any, memory_action: Any = None) -> list[float]:
        if isinstance(text, str) and EngramMiniLM.enabled and text in EngramMiniLM.cache:
            return EngramMiniLM.cache[text]
        vec: list[float] = EngramMiniLM._model.embed_sync([str(text)])[0].tolist()
        return vec

    def embed_batch(self, texts: Any, memory_action: str = "add") -> list[list[float]]:
        out: list[list[float]] = EngramMiniLM._model.embed_sync([str(t) for t in texts]).tolist()
        return out


class Mem0Runner:
    def __init__(self) -> None:
        self.memory: Any = None
        self.home: Path | None = None
        self.tags: dict[str, str] = {}

    def op_init(
        self, home: str, engines: dict[str, Any] | None = None, factory_module: str = "__main__"
    ) -> dict[str, Any]:
        from mem0 import Memory
        from mem0.utils.factory import EmbedderFactory

        EmbedderFactory.provider_to_class["huggingface"] = f"{factory_module}.EngramMiniLM"
        self.home = Path(home)
        config = {
            "vector_store": {
                "provider": "qdrant",
                "config": {
                    "collection_name": "bench",
                    "embedding_model_dims": 384,
                    "path": str(self.home / "qdrant"),
                    "on_disk": False,
                },
            },
            "embedder": {
                "provider": "huggingface",
                "config": {"model": "all-MiniLM-L6-v2", "embedding_dims": 384},
            },
            "llm": {"provider": "openai", "config": {"api_key": "sk-offline-unused"}},
            "history_db_path": str(self.home / "history.db"),
        }
        self.memory = Memory.from_config(config)
        return {"engines": ["mem0"], "config": config}

    def op_warm(self, texts: list[str]) -> dict[str, Any]:
        t0 = time.perf_counter()
        todo = [t for t in dict.fromkeys(texts) if t not in EngramMiniLM.cache]
        if todo:
            for t, v in zip(todo, EngramMiniLM._model.embed_sync(todo).tolist(), strict=True):
                EngramMiniLM.cache[t] = v
        return {"ms": (time.perf_counter() - t0) * 1000}

    def op_add_many(self, engine: str, items: list[dict[str, Any]], cached: bool = False) -> dict[str, Any]:
        EngramMiniLM.enabled = cached
        times, ids = [], []
        for item in items:
            if item.get("infer"):
                raise ValueError("the mem0 runner is offline: infer=True needs an LLM")
            t0 = time.perf_counter()
            out = self.memory.add(
                item["messages"], user_id=item["user_id"], metadata=item.get("metadata"), infer=False
            )
            times.append((time.perf_counter() - t0) * 1000)
            got = [r["id"] for r in out["results"]]
            ids.append(got)
            for mem_id, tag in zip(got, item.get("tags") or [], strict=False):
                self.tags[mem_id] = tag
        EngramMiniLM.enabled = False
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
        EngramMiniLM.enabled = cached
        times: list[float] = []
        answers: list[list[dict[str, Any]]] = []
        for q in queries:
            t0 = time.perf_counter()
            out = self.memory.search(q, filters={"user_id": user_id}, top_k=top_k, threshold=0.0)
            times.append((time.perf_counter() - t0) * 1000)
            if details:
                answers.append(
                    [
                        {
                            "id": r["id"],
                            "score": r.get("score"),
                            "tags": [self.tags[r["id"]]] if r["id"] in self.tags else [],
                        }
                        for r in out["results"]
                    ]
                )
            elif not out["results"]:
                raise RuntimeError(f"empty search result for {q!r}")
        EngramMiniLM.enabled = False
        return {"ms": times, "results": answers}

    def op_bulk(
        self,
        engine: str,
        user_ids: list[str],
        texts: list[str],
        vectors: str,
        offset: int = 0,
        chunk: int = 1000,
    ) -> dict[str, Any]:
        """Precomputed memories straight into mem0's vector store, with the payload mem0 itself writes."""
        from mem0.utils.lemmatization import lemmatize_for_bm25

        matrix = np.load(vectors, mmap_mode="r")
        store = self.memory.vector_store
        t0 = time.perf_counter()
        for start in range(0, len(texts), chunk):
            idx = range(start, min(start + chunk, len(texts)))
            now = datetime.now(UTC).isoformat()
            payloads = [
                {
                    "data": texts[i],
                    "hash": hashlib.md5(texts[i].encode()).hexdigest(),
                    "created_at": now,
                    "updated_at": now,
                    "user_id": user_ids[i],
                    "role": "user",
                    "text_lemmatized": lemmatize_for_bm25(texts[i]),
                }
                for i in idx
            ]
            store.insert(
                vectors=[np.asarray(matrix[offset + i]).tolist() for i in idx],
                ids=[str(uuid.uuid4()) for _ in idx],
                payloads=payloads,
            )
        return {"ms": (time.perf_counter() - t0) * 1000}

    def op_store_search_many(
        self, engine: str, user_id: str, queries: list[str], vectors: str, top_k: int = 20
    ) -> dict[str, Any]:
        """mem0's search pipeline minus the embedding: the query vectors come precomputed."""
        matrix = np.load(vectors)
        for q, v in zip(queries, matrix, strict=False):
            EngramMiniLM.cache[q] = v.tolist()
        out = self.op_search_many(engine, queries, user_id, top_k, cached=True, details=False)
        return {"ms": out["ms"], "empty": 0}

    def op_stats(self) -> dict[str, Any]:
        disk = 0
        if self.home is not None:
            disk = sum(p.stat().st_size for p in self.home.rglob("*") if p.is_file())
        return {"rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "disk_bytes": disk}

    def op_checkpoint(self) -> dict[str, Any]:
        return self.op_stats()


def main() -> None:
    runner = Mem0Runner()
    out = sys.stdout
    sys.stdout = sys.stderr
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        if op == "exit":
            out.write(json.dumps({"ok": True}) + "\n")
            out.flush()
            break
        try:
            answer = getattr(runner, f"op_{op}")(**command)
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            answer = {"error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    main()

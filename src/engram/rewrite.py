"""Query rewriting: one LLM call turns a question into a keyword query and paraphrases.

``search(rewrite=True)`` searches the question and each variant, then keeps for every memory the best
score any of them gave it (:func:`engram.fusion.best_of`). A failed call means a plain search, and the
result says so.
"""

from __future__ import annotations

from typing import Any

from engram.errors import ProviderError
from engram.extract.parse import complete_json
from engram.interfaces import LLM
from engram.rerankers.llm import MAX_QUERY_CHARS, cut

REWRITE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "keywords": {"type": "string"},
        "paraphrases": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["keywords", "paraphrases"],
    "additionalProperties": False,
}
INSTRUCTIONS = """\
You help search a user's long-term memory (short facts and chat messages). Rewrite the question \
so that memories phrased differently are found too:
- "keywords": the words a memory answering it would likely contain (names, things, places, \
synonyms), space-separated, no filler words;
- "paraphrases": up to %d short rewordings of the question with other words for its key terms.
Keep names, numbers and dates as given; do not answer the question.
Answer with JSON only: {"keywords": "...", "paraphrases": ["..."]}.\
"""
MAX_VARIANT_CHARS = 500


async def rewrite_query(llm: LLM, query: str, *, variants: int) -> list[str]:
    """At most ``variants`` other phrasings of ``query``: its keyword query first, then paraphrases.

    One LLM call; a ProviderError when the answer holds none that differs from the query.
    """
    messages = [
        {"role": "system", "content": INSTRUCTIONS % max(variants - 1, 1)},
        {"role": "user", "content": f"Question: {cut(query, MAX_QUERY_CHARS)}"},
    ]
    answer = await complete_json(llm, messages, schema=REWRITE_SCHEMA)
    found: list[str] = []
    seen = {cut(query, MAX_VARIANT_CHARS).casefold()}
    for text in _variant_texts(answer.values):
        clean = cut(text, MAX_VARIANT_CHARS)
        if clean and clean.casefold() not in seen:
            seen.add(clean.casefold())
            found.append(clean)
    if not found:
        raise ProviderError(f"{llm.name} gave no usable query variant", provider=llm.name)
    return found[:variants]


def _variant_texts(values: list[Any]) -> list[str]:
    texts: list[str] = []
    for value in values:
        if isinstance(value, dict):
            keywords = value.get("keywords")
            if isinstance(keywords, list):
                keywords = " ".join(str(k) for k in keywords if isinstance(k, str | int))
            if isinstance(keywords, str):
                texts.append(keywords)
            others = value.get("paraphrases", value.get("queries", []))
            texts += [p for p in (others if isinstance(others, list) else [others]) if isinstance(p, str)]
        elif isinstance(value, list):
            texts += [v for v in value if isinstance(v, str)]
    return texts

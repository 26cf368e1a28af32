"""Turning a search query into keyword terms, shared by every store's full-text side."""

from __future__ import annotations

import re

_WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)

# Small and conservative on purpose: question words and glue that carry no topic.
_STOPWORD_TEXT = """
a about an and are as at be been being but by can could did do does doing for from had has have having
he her hers him his how i if in into is it its itself me my of on or our ours she so some than that the
their theirs them then there these they this those to was we were what when where which while who whom
whose why will with would you your yours
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORD_TEXT.split())


def query_terms(text: str, *, max_terms: int = 32) -> list[str]:
    """Lower-cased content words of ``text``, de-duplicated, in order; stopwords dropped.

    Falls back to every word when the query consists of stopwords only.
    """
    words = [w.lower().replace("’", "'") for w in _WORD_RE.findall(text)]
    seen: set[str] = set()
    content: list[str] = []
    for word in words:
        base = word.split("'")[0]
        if base and base not in STOPWORDS and base not in seen:
            seen.add(base)
            content.append(base)
    if not content:
        content = list(dict.fromkeys(w.split("'")[0] for w in words if w))
    return content[:max_terms]

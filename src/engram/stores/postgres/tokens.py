"""Keyword tokens for the PostgreSQL store, produced by exactly the embedded store's tokenizer.

SQLite FTS5's ``porter unicode61 remove_diacritics 2`` tokenizer (Python's own ``sqlite3``) turns a
text into stemmed terms with positions; the store saves them as a ``tsvector`` (indexed with GIN) and
the token count as ``doc_len``. Both stores therefore see the same terms, document frequencies and
lengths, and BM25 ranks the same way on both: the database's locale and text-search
configurations play no part.
"""

from __future__ import annotations

import sqlite3
import struct
import threading
from collections.abc import Sequence

_TOKENIZER = "porter unicode61 remove_diacritics 2"
_MAX_POSITION = 16383  # tsvector positions are 1..16383
_MAX_LEXEME_BYTES = 2046
_MAX_POSITIONS = 256  # per term in a tsvector (so term frequency saturates at 256)
_local = threading.local()


def _conn() -> sqlite3.Connection:
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=True)
        conn.execute(f"CREATE VIRTUAL TABLE docs USING fts5(body, tokenize='{_TOKENIZER}')")
        conn.execute("CREATE VIRTUAL TABLE vocab USING fts5vocab(docs, instance)")
        _local.conn = conn
    return conn


def tokenize_many(texts: Sequence[str]) -> list[list[tuple[str, int]]]:
    """(term, 0-based offset) of every token of every text."""
    if not texts:
        return []
    conn = _conn()
    conn.execute("BEGIN")
    try:
        conn.executemany("INSERT INTO docs (rowid, body) VALUES (?, ?)", enumerate(texts, start=1))
        out: list[list[tuple[str, int]]] = [[] for _ in texts]
        for term, doc, offset in conn.execute("SELECT term, doc, offset FROM vocab").fetchall():
            out[doc - 1].append((term, offset))  # SQLite gives str and int
        conn.execute("DELETE FROM docs")
    finally:
        conn.execute("COMMIT")
    return out


def _quote(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def positions(tokens: list[tuple[str, int]]) -> dict[str, list[int]]:
    """Each term's sorted, distinct 1-based positions, within ``tsvector``'s limits."""
    found: dict[str, list[int]] = {}
    for term, offset in tokens:
        if term in found:
            found[term].append(offset + 1)
        else:
            found[term] = [offset + 1]
    out: dict[str, list[int]] = {}
    for term, pos in found.items():
        # a UTF-8 character is at most 4 bytes: only long terms need encoding to be measured
        if len(term) * 4 > _MAX_LEXEME_BYTES and len(term.encode("utf-8")) > _MAX_LEXEME_BYTES:
            continue
        if len(pos) > 1 or pos[0] > _MAX_POSITION:  # one position in range is already canonical
            pos = sorted({min(p, _MAX_POSITION) for p in pos})[:_MAX_POSITIONS]
        out[term] = pos
    return out


def tsvector_literal(tokens: list[tuple[str, int]]) -> str:
    """``tsvector`` input text: each term with its 1-based positions."""
    return " ".join(
        f"{_quote(term)}:{','.join(str(p) for p in pos)}" for term, pos in positions(tokens).items()
    )


def tsvector_binary(tokens: list[tuple[str, int]]) -> bytes:
    """``tsvector`` in PostgreSQL's binary wire format (for ``COPY ... (FORMAT BINARY)``): the entry
    count, then each lexeme NUL-terminated with its position count and positions (weight D)."""
    found = positions(tokens)
    parts = [struct.pack("!i", len(found))]
    for term, pos in found.items():
        parts.append(term.encode("utf-8"))
        parts.append(_ONE_POSITION.pack(0, 1, pos[0]) if len(pos) == 1 else _positions_struct(pos))
    return b"".join(parts)


_ONE_POSITION = struct.Struct("!BHH")  # the lexeme's NUL, one position, the position


def _positions_struct(pos: list[int]) -> bytes:
    return b"\0" + struct.pack(f"!H{len(pos)}H", len(pos), *pos)


def document(text: str, scope_ids: int) -> tuple[str, int]:
    """(tsvector literal, BM25 length) of one memory text.

    The length counts what the embedded store's FTS5 row holds: the text's tokens plus one scope
    token for each scope id that is set.
    """
    tokens = tokenize_many([text])[0]
    return tsvector_literal(tokens), len(tokens) + scope_ids


def query_lexemes(terms: Sequence[str]) -> list[str]:
    """One stemmed term per query term that yields any (each is one FTS5 phrase)."""
    lexemes: list[str] = []
    for tokens in tokenize_many(list(terms)):
        lexemes.extend(term for term, _ in tokens if len(term.encode("utf-8")) <= _MAX_LEXEME_BYTES)
    return lexemes


def tsquery_literal(lexemes: Sequence[str]) -> str:
    """``tsquery`` input text matching any of ``lexemes`` (taken verbatim, no normalisation)."""
    return " | ".join(_quote(lexeme) for lexeme in lexemes)

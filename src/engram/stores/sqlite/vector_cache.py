"""An in-process cache of the vectors of recently searched scopes.

Search narrows to the scope first and scores exactly with numpy; the cache saves re-reading the
scope's vectors from SQLite on every query. Entries are tied to the store's write ``generation``:
this process's own adds are appended in place, anything else (another process's write, an update,
a delete) drops the stale entries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from engram.types import Scope, Vector

ScopeKey = tuple[str, str | None, str | None, str | None, str | None]


def cache_key(namespace: str, scope: Scope) -> ScopeKey:
    return (namespace, *scope.as_tuple())


@dataclass
class ScopeVectors:
    """Every non-deleted memory of one scope: ids, vectors and what visibility needs."""

    generation: int
    ids: list[str]
    matrix: Vector  # (n, dim) float32, rows L2-normalised
    superseded: np.ndarray  # bool (n,)
    expires: np.ndarray  # int64 (n,) date ordinal, max int when never
    observed: np.ndarray  # float64 (n,) observed_at as unix seconds
    _pending: list[tuple[str, Vector, int, float]] = field(default_factory=list)
    _index: dict[str, int] | None = None

    def append(self, rows: list[tuple[str, Vector, int, float]]) -> None:
        self._pending.extend(rows)

    def materialize(self) -> None:
        """Fold appended rows into the arrays (lazily, so a burst of adds costs one concatenate)."""
        if not self._pending:
            return
        ids, vectors, expires, observed = zip(*self._pending, strict=True)
        self.ids.extend(ids)
        self.matrix = np.vstack([self.matrix, np.stack(vectors)]).astype(np.float32, copy=False)
        self.superseded = np.concatenate([self.superseded, np.zeros(len(ids), dtype=bool)])
        self.expires = np.concatenate([self.expires, np.asarray(expires, dtype=np.int64)])
        self.observed = np.concatenate([self.observed, np.asarray(observed, dtype=np.float64)])
        self._pending.clear()
        self._index = None

    def row_of(self, memory_id: str) -> int | None:
        if self._index is None:
            self._index = {mid: i for i, mid in enumerate(self.ids)}
        return self._index.get(memory_id)

    @property
    def size(self) -> int:
        return len(self.ids) + len(self._pending)


class VectorCache:
    """LRU of :class:`ScopeVectors`, bounded by the number of cached vectors."""

    def __init__(self, max_vectors: int) -> None:
        self._max = max_vectors
        self._entries: OrderedDict[ScopeKey, ScopeVectors] = OrderedDict()
        self._lock = threading.Lock()
        self.generation = -1  # the store generation the cache as a whole reflects

    def get(self, key: ScopeKey, generation: int) -> ScopeVectors | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.generation != generation:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            entry.materialize()
            return entry

    def lookup(self, namespace: str, memory_ids: list[str], generation: int) -> dict[str, Vector]:
        """Vectors of ``memory_ids`` found in current entries of ``namespace``."""
        found: dict[str, Vector] = {}
        with self._lock:
            for key, entry in self._entries.items():
                if key[0] != namespace or entry.generation != generation:
                    continue
                entry.materialize()
                for mid in memory_ids:
                    row = entry.row_of(mid)
                    if row is not None:
                        found[mid] = entry.matrix[row]
                if len(found) == len(memory_ids):
                    break
        return found

    def put(self, key: ScopeKey, entry: ScopeVectors) -> None:
        if entry.size > self._max:
            return
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            total = sum(e.size for e in self._entries.values())
            while total > self._max and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                total -= dropped.size

    def after_own_add(
        self, namespace: str, before: int, after: int, rows: list[tuple[Scope, str, Vector, int, float]]
    ) -> None:
        """Our own transaction moved the store from ``before`` to ``after`` by adding ``rows``."""
        with self._lock:
            for key in list(self._entries):
                entry = self._entries[key]
                if entry.generation != before:
                    del self._entries[key]
                    continue
                entry.generation = after
                if key[0] != namespace:
                    continue
                wanted = [(mid, vec, exp, obs) for scope, mid, vec, exp, obs in rows if _matches(key, scope)]
                if wanted:
                    entry.append(wanted)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _matches(key: ScopeKey, scope: Scope) -> bool:
    return all(want is None or want == have for want, have in zip(key[1:], scope.as_tuple(), strict=True))

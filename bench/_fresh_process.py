"""One fresh process: import time, then the first add and search. ``python _fresh_process.py engram|mem0``.

Prints one JSON line. Run by ``bench.speed`` with each system's own interpreter and a new empty home.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def engram() -> dict[str, float]:
    sys.path.insert(0, os.environ.get("ENGRAM_BENCH_SRC") or str(HERE.parent / "src"))
    t0 = time.perf_counter()
    import engram  # noqa: F401
    from engram import Memory

    t1 = time.perf_counter()
    m = Memory()
    m.add([{"role": "user", "content": "I love sci-fi movies"}], user_id="alice", infer=False)
    t2 = time.perf_counter()
    found = m.search("what movies does alice like", user_id="alice")
    t3 = time.perf_counter()
    assert found["results"], "no result"
    return {
        "import_ms": (t1 - t0) * 1000,
        "first_add_ms": (t2 - t1) * 1000,
        "first_search_ms": (t3 - t2) * 1000,
    }


def mem0() -> dict[str, float]:
    t0 = time.perf_counter()
    import mem0  # noqa: F401
    from mem0 import Memory

    t1 = time.perf_counter()
    sys.path.insert(0, str(HERE))
    import _mem0_runner  # the same embedder adapter and configuration as the benchmark runner

    m = _mem0_runner.Mem0Runner()
    m.op_init(os.environ["MEM0_DIR"], factory_module="_mem0_runner")
    memory: Memory = m.memory
    memory.add([{"role": "user", "content": "I love sci-fi movies"}], user_id="alice", infer=False)
    t2 = time.perf_counter()
    found = memory.search("what movies does alice like", filters={"user_id": "alice"}, threshold=0.0)
    t3 = time.perf_counter()
    assert found["results"], "no result"
    return {
        "import_ms": (t1 - t0) * 1000,
        "first_add_ms": (t2 - t1) * 1000,
        "first_search_ms": (t3 - t2) * 1000,
    }


if __name__ == "__main__":
    print(json.dumps(engram() if sys.argv[1] == "engram" else mem0()))

"""Run by the mem0 2.2.1 venv (bench/mem0_env.py): writes a mem0 store the way mem0 itself does.

Usage: python tests/mem0_writer.py HOME. mem0 is configured as in bench/_mem0_runner.py (local Qdrant
under HOME/qdrant, history in HOME/history.db, Engram's offline MiniLM as its embedder, no LLM:
infer=False). Prints what mem0's own ``get`` shows of every memory that is left.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._mem0_runner import Mem0Runner


def main(home: str) -> None:
    runner = Mem0Runner()
    runner.op_init(home, factory_module="bench._mem0_runner")
    m = runner.memory
    kept = []
    added = m.add(
        [{"role": "user", "name": "alice", "content": "I prefer window seats on long flights"}],
        user_id="alice", metadata={"topic": "travel", "priority": 2}, infer=False,
    )  # fmt: skip
    kept += [r["id"] for r in added["results"]]
    added = m.add("Bob drinks tea every morning", user_id="bob", agent_id="barista", infer=False)
    tea = added["results"][0]["id"]
    kept.append(tea)
    m.update(tea, "Bob drinks green tea every morning")
    added = m.add("Plan the Lisbon offsite in May", agent_id="planner", run_id="run-7", infer=False,
                  metadata={"team": "ops"}, expiration_date="2031-05-31")  # fmt: skip
    kept += [r["id"] for r in added["results"]]
    gone = m.add("a note that gets deleted", user_id="alice", infer=False)["results"][0]["id"]
    m.delete(gone)
    print(json.dumps({"memories": [m.get(i) for i in kept], "deleted": [gone]}))


if __name__ == "__main__":
    main(sys.argv[1])

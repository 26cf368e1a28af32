"""Engram: long-term memory for AI agents.

Importing this package has no side effects: no files, no network, no heavy imports. The public names
below load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engram.errors import (
    ConfigError,
    EngramError,
    ExtractionError,
    FilterError,
    NotFoundError,
    ProviderError,
    ValidationError,
)

__version__ = "0.1.0"
__all__ = [
    "AsyncMemory",
    "AsyncMemoryClient",
    "ConfigError",
    "EngramError",
    "ExtractionError",
    "FilterError",
    "Memory",
    "MemoryClient",
    "MemoryConfig",
    "NotFoundError",
    "ProviderError",
    "ValidationError",
]

if TYPE_CHECKING:
    from engram.client import AsyncMemoryClient, MemoryClient
    from engram.config import MemoryConfig
    from engram.memory import AsyncMemory
    from engram.sync import Memory

_LAZY = {
    "AsyncMemory": "engram.memory",
    "Memory": "engram.sync",
    "MemoryConfig": "engram.config",
    "MemoryClient": "engram.client",
    "AsyncMemoryClient": "engram.client",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engram' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

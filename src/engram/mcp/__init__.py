"""Engram as an MCP server: a thin layer over the public :class:`engram.AsyncMemory` API.

- ``engram mcp`` serves stdio on the embedded store (``engram.mcp.stdio``);
- ``engram serve`` also serves streamable HTTP at ``/mcp`` with the REST API's keys (``engram.mcp.http``);
- ``engram mcp config <client>`` prints or writes a client's configuration (``engram.mcp.clients``).

Needs the ``mcp`` extra (``pip install "engram-recall[mcp]"``); nothing here is imported by the core.
"""

from __future__ import annotations

from typing import Any

from engram.errors import MissingDependencyError


def require_sdk() -> None:
    """Raise a clear error naming the extra when the official ``mcp`` SDK is missing."""
    try:
        import mcp.server.mcpserver  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError("mcp", "mcp") from e


def http_endpoint(server: Any) -> Any | None:
    """The ``/mcp`` endpoint for ``engram serve`` (an ``McpEndpoint``), or None without the mcp extra."""
    import importlib.util

    if importlib.util.find_spec("mcp") is None:
        return None
    from engram.mcp.http import McpEndpoint

    return McpEndpoint(server)

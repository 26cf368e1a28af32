"""The Engram server: mem0's Platform REST API over :class:`engram.AsyncMemory` (``engram serve``)."""

from __future__ import annotations

from engram.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]


def create_app(settings: ServerSettings | None = None) -> object:
    """Build the FastAPI app (see :func:`engram.server.app.create_app`)."""
    from engram.server.app import create_app as _create

    return _create(settings)

"""Start the server processes (uvicorn); ``engram worker`` lives in :mod:`engram.server.worker`."""

from __future__ import annotations

import logging
import os
from typing import Any

from engram.errors import MissingDependencyError
from engram.server.settings import ServerSettings

logger = logging.getLogger("engram.server")


def run(**overrides: Any) -> None:
    """Serve until interrupted. Settings come from ``ENGRAM_SERVER_*`` and ``overrides``."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise MissingDependencyError(e.name or "fastapi", "server") from e

    settings = ServerSettings.from_env(**overrides)
    os.environ.update(settings.to_env())  # uvicorn's server processes rebuild the settings from these
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        "engram.server.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="info",
        timeout_graceful_shutdown=10,
    )

"""The HTTP routes, one module of plain handler functions per resource.

``ROUTERS`` is the order in which :func:`engram.server.app.create_app` mounts them.
"""

from __future__ import annotations

from fastapi import APIRouter

from engram.server.routes import (
    add,
    batch,
    entities,
    events,
    exports,
    feedback,
    memories,
    profiles,
    projects,
    webhooks,
)

ROUTERS: tuple[APIRouter, ...] = (
    add.router,
    events.router,
    memories.router,
    batch.router,
    projects.router,
    profiles.router,
    entities.router,
    exports.router,
    feedback.router,
    webhooks.router,
)

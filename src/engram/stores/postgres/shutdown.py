"""Quiet pool shutdown: a connection attempt cancelled because the event loop is ending is no error.

``asyncio.run`` cancels every task when the program's main coroutine returns, the pool's connection
attempts included; psycopg_pool logs each as "error connecting". :class:`CancelledConnectFilter`
drops exactly those records (a real connection error still shows).
"""

from __future__ import annotations

import asyncio
import logging

POOL_LOGGER = "psycopg.pool"


class CancelledConnectFilter(logging.Filter):
    """Drops psycopg_pool's warnings about connection attempts that were cancelled."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(arg, asyncio.CancelledError) for arg in args)


def install() -> None:
    """Add the filter to psycopg_pool's logger once (idempotent)."""
    logger = logging.getLogger(POOL_LOGGER)
    if not any(isinstance(f, CancelledConnectFilter) for f in logger.filters):
        logger.addFilter(CancelledConnectFilter())

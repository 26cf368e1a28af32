"""Times in the HTTP API: records keep UTC epoch seconds, answers show ISO 8601."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: float | None) -> str | None:
    """``ts`` (epoch seconds) as an ISO 8601 UTC string, or None."""
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None

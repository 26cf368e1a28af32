"""Webhook signatures: receivers recompute the HMAC of the raw body with their webhook's secret."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Engram-Signature"


def sign(secret: str, body: bytes) -> str:
    """The ``X-Engram-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()

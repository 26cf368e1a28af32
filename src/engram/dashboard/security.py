"""Signed session cookies and CSRF tokens for the dashboard.

The session cookie holds the sha256 of the API key the user signed in with (never the key), a CSRF
token and the time it was issued, signed with HMAC-SHA256 under a server secret. It is HttpOnly and
SameSite=Strict; every form carries the CSRF token, checked on every POST.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COOKIE_NAME = "engram_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
SECRET_ENV = "ENGRAM_DASHBOARD_SECRET"


@dataclass(slots=True)
class Session:
    """What a signed cookie says: who signed in (``key_hash``, None when anonymous) and the CSRF token."""

    csrf: str
    key_hash: str | None = None
    issued: float = 0.0


def load_secret(home: Path) -> bytes:
    """The signing secret: ``$ENGRAM_DASHBOARD_SECRET``, else ``<home>/dashboard.secret`` (created once,
    mode 0600, shared by every server process on this machine)."""
    configured = os.environ.get(SECRET_ENV)
    if configured:
        return configured.encode("utf-8")
    path = home / "dashboard.secret"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode("utf-8")


class Signer:
    """Encodes sessions into cookie values and back, refusing anything tampered with or too old."""

    def __init__(self, secret: bytes, max_age: float = SESSION_SECONDS) -> None:
        self._secret = secret
        self.max_age = max_age

    def _mac(self, payload: bytes) -> str:
        digest = hmac.new(self._secret, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def dumps(self, session: Session) -> str:
        data: dict[str, Any] = {"c": session.csrf, "k": session.key_hash, "t": session.issued or time.time()}
        payload = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode("utf-8"))
        return payload.decode("ascii").rstrip("=") + "." + self._mac(payload.rstrip(b"="))

    def loads(self, value: str | None) -> Session | None:
        if not value or "." not in value:
            return None
        payload, mac = value.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(payload.encode("ascii", "replace"))):
            return None
        try:
            padded = payload + "=" * (-len(payload) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
            issued = float(data["t"])
            session = Session(csrf=str(data["c"]), key_hash=data.get("k"), issued=issued)
        except (ValueError, KeyError, TypeError):
            return None
        if time.time() - issued > self.max_age:
            return None
        return session


def new_session(key_hash: str | None = None) -> Session:
    """A fresh session with a new CSRF token."""
    return Session(csrf=secrets.token_urlsafe(24), key_hash=key_hash, issued=time.time())


def csrf_ok(session: Session | None, submitted: str | None) -> bool:
    """Whether a submitted token matches the session's."""
    if session is None or not submitted:
        return False
    return hmac.compare_digest(session.csrf.encode("utf-8"), submitted.encode("utf-8"))

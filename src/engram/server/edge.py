"""The ASGI middleware at the edge of the app, before any handler runs.

- every request gets an id (``X-Request-ID`` on the answer, in the log beside any traceback);
- a body over ``max_body_bytes`` answers 413 (with or without Content-Length);
- a JSON body holding a string no store can keep (a NUL, a lone surrogate) answers 422 naming it;
- anything unexpected answers the generic JSON 500 and the connection stays usable (keep-alive).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engram.errors import HTTP_STATUS
from engram.server.errors import error_response, internal_error

logger = logging.getLogger("engram.server")
_SUSPECT = re.compile(rb"\\u(0000|d[89a-f][0-9a-f]{2})", re.IGNORECASE)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def bad_string(body: bytes) -> tuple[str, str] | None:
    """``(field, problem)`` for the first string in a JSON body with a NUL or a lone surrogate."""
    if not _SUSPECT.search(body):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None  # the handler answers invalid_json
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                sub = f"{path}.{key}" if path else str(key)
                stack.extend([(key, path or "body"), (value, sub)])
        elif isinstance(item, list):
            stack.extend((value, f"{path}[{i}]") for i, value in enumerate(item))
        elif isinstance(item, str):
            if "\x00" in item:
                return path or "body", "must not contain NUL characters"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return path or "body", "is not valid Unicode (lone surrogate)"
    return None


class Edge:
    """Request ids, the body size limit, unstorable strings and the catch-all 500 (see module doc)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        body = await self._read_body(scope, receive)
        if body is None:
            too_large = error_response(
                HTTP_STATUS["payload_too_large"],
                "payload_too_large",
                f"The request body is larger than {self.max_bytes} bytes",
                {"max_bytes": self.max_bytes},
            )
            await too_large(scope, receive, send_with_id)
            return
        problem = bad_string(body)
        if problem is not None:
            field, what = problem
            refused = error_response(
                HTTP_STATUS["validation_error"], "validation_error", f"{field} {what}", {"field": field}
            )
            await refused(scope, receive, send_with_id)
            return
        try:
            await self.app(scope, self._replay(body, receive), send_with_id)
        except Exception as exc:  # anything no handler answered: log it, answer JSON, keep the connection
            logger.error("request %s failed: unhandled %s", request_id, type(exc).__name__, exc_info=exc)
            if not started:
                await internal_error(request_id)(scope, receive, send_with_id)

    @staticmethod
    def _request_id(scope: Scope) -> str:
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        return given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body (bounded by ``max_bytes``), or None when it is larger."""
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return None
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    def _replay(body: bytes, receive: Receive) -> Receive:
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

"""Every error the server answers is JSON ``{"error": {"code", "message", "details"}}``; never a trace.

The status comes from the error's code through :data:`engram.errors.HTTP_STATUS`, the one table that
engram's own client reads back. A 5xx never shows internal text (database errors, file paths): it
answers a generic message with the request id that the server log shows beside the traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engram import errors as E

logger = logging.getLogger("engram.server")
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


class ApiError(E.EngramError):
    """An error answered by the server with an explicit ``code`` (its status: ``HTTP_STATUS[code]``)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.code = code
        self.headers = headers or {}


def not_found(what: str, ident: Any) -> ApiError:
    """404 for ``what`` ``ident`` (also for another project's objects)."""
    return ApiError("not_found", f"{what} {ident!s} not found", details={"id": str(ident)})


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The JSON error body; ``detail`` repeats the message for mem0's clients, which show that field."""
    body = {"error": {"code": code, "message": message, "details": details or {}}, "detail": message}
    return JSONResponse(body, status_code=status, headers=headers)


def internal_error(request_id: str | None, code: str = "internal_error") -> JSONResponse:
    """The generic 500: no internal text, only the id to find the traceback in the server log."""
    message = f"internal error (request id {request_id})" if request_id else "internal error"
    code = "internal_error" if code == "engram_error" else code
    return error_response(500, code, message, {"request_id": request_id})


def request_id_of(request: Request) -> str | None:
    """The id :class:`engram.server.edge.Edge` gave this request."""
    value = getattr(request.state, "request_id", None)
    return str(value) if value else None


def _field_of(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _engram_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, E.EngramError)
    status = E.status_of(exc)
    headers = dict(getattr(exc, "headers", {}) or {})
    retry = exc.details.get("retry_after")
    if status == 429 and isinstance(retry, int) and "Retry-After" not in headers:
        headers["Retry-After"] = str(retry)
    if status < 500:
        return error_response(status, exc.code, exc.message, exc.details, headers)
    request_id = request_id_of(request)
    logger.error("request %s failed: %s: %s", request_id, exc.code, exc.message, exc_info=exc)
    if status == 500:
        return internal_error(request_id, exc.code)
    first_line = exc.message.split("\n")[0]
    return error_response(status, exc.code, first_line, {"request_id": request_id}, headers)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(err.get("type") in ("json_invalid", "json_type") for err in errors):
        return error_response(400, "invalid_json", "The request body is not valid JSON", {})
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    field = _field_of(first.get("loc", ()))
    problems = [{"field": _field_of(err.get("loc", ())), "message": err.get("msg", "")} for err in errors]
    return error_response(
        E.HTTP_STATUS["validation_error"],
        "validation_error",
        f"{field}: {first.get('msg', 'invalid')}",
        {"field": field, "errors": problems},
    )


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), {}, dict(exc.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app`` (anything else: :class:`engram.server.edge.Edge`)."""
    app.add_exception_handler(E.EngramError, _engram_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)

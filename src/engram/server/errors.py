"""Every error the server answers is JSON ``{"error": {"code", "message", "details"}}``; never a trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engram import errors as E

logger = logging.getLogger("engram.server")


class ApiError(Exception):
    """An HTTP error with a machine-readable code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def not_found(what: str, ident: Any) -> ApiError:
    return ApiError(404, "not_found", f"{what} {ident!s} not found", details={"id": str(ident)})


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    # "detail" duplicates the message for mem0's clients, which show that field.
    body = {"error": {"code": code, "message": message, "details": details or {}}, "detail": message}
    return JSONResponse(body, status_code=status, headers=headers)


def status_of(exc: E.EngramError) -> int:
    """The HTTP status of an engine error."""
    if isinstance(exc, E.NotFoundError):
        return 404
    if isinstance(exc, E.ConflictError):
        return 409
    if isinstance(exc, E.ScopeRequiredError):
        return 400
    if isinstance(exc, E.ValidationError):
        return 422
    if isinstance(exc, E.MissingDependencyError):
        return 500
    if isinstance(exc, E.ConfigError | E.InferenceUnavailableError):
        return 400
    if isinstance(exc, E.ProviderError):
        return 502
    return 500


def _field_of(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(E.EngramError)
    async def _engram_error(_: Request, exc: E.EngramError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            logger.error("engine error: %s", exc, exc_info=exc)
            message = "internal error" if status == 500 and not isinstance(exc, E.StoreError) else exc.message
            return error_response(status, exc.code, message.split("\n")[0], {})
        return error_response(status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(err.get("type") in ("json_invalid", "json_type") for err in errors):
            return error_response(400, "invalid_json", "The request body is not valid JSON", {})
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        field = _field_of(first.get("loc", ()))
        problems = [{"field": _field_of(err.get("loc", ())), "message": err.get("msg", "")} for err in errors]
        return error_response(
            422,
            "validation_error",
            f"{field}: {first.get('msg', 'invalid')}",
            {"field": field, "errors": problems},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
        return error_response(
            exc.status_code,
            codes.get(exc.status_code, "http_error"),
            str(exc.detail),
            {},
            dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "internal error", {})

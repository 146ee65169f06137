from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from shop_common.context import current_request_id

_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    414: "uri_too_long",
    500: "internal_error",
    502: "bad_upstream_response",
    503: "upstream_unavailable",
    504: "upstream_timeout",
}


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str
    request_id: str


class ErrorBody(BaseModel):
    """The one error shape of every shop service."""

    error: ErrorDetail


class ApiError(Exception):
    """An error that maps to a status code and a message a client can read."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    detail = {
        "status": status,
        "code": code or _CODES.get(status, "error"),
        "message": message,
        "request_id": current_request_id(),
    }
    return orjson.dumps({"error": detail})


def error_response(status: int, message: str, code: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(status, message, code), status_code=status,
                    media_type="application/json", headers=headers)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the error shape for these statuses."""
    return {status: {"model": ErrorBody, "description": _CODES.get(status, "error")}
            for status in statuses}


async def _on_api_error(_: Request, exc: ApiError) -> Response:
    return error_response(exc.status, exc.message, exc.code)


async def _on_http_exception(_: Request, exc: StarletteHTTPException) -> Response:
    messages = {404: "no such resource", 405: "method not allowed"}
    message = messages.get(exc.status_code) or str(exc.detail)
    allow = (exc.headers or {}).get("Allow")
    return error_response(exc.status_code, message, headers={"Allow": allow} if allow else None)


async def _on_validation_error(_: Request, exc: RequestValidationError) -> Response:
    # Never echo the raw input back: say which parameter is wrong, not what it was.
    problems = [
        f"{'.'.join(str(part) for part in err.get('loc', ())[1:]) or 'request'}: {err.get('msg')}"
        for err in exc.errors()[:3]
    ]
    return error_response(400, "invalid request: " + "; ".join(problems))


def without_validation_errors(app: FastAPI) -> None:
    """FastAPI documents a 422 on every operation with parameters; the shop answers bad input
    with a 400 in its own error shape, so the schema must not promise a 422."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()  # FastAPI caches it in app.openapi_schema: edited once, in place
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                operation.get("responses", {}).pop("422", None)
        components = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        return schema

    # FastAPI's documented way to change the schema ("Extending OpenAPI"): replace the method.
    app.openapi = openapi  # type: ignore[method-assign]


# FastAPI's own type for its exception_handlers argument: each handler takes the exception
# class it is registered for.
ExceptionHandler = Callable[[Request, Any], Coroutine[Any, Any, Response]]
ExceptionHandlers = dict[int | type[Exception], ExceptionHandler]


def exception_handlers() -> ExceptionHandlers:
    """Every error in the one shop shape: ApiError, Starlette's HTTP errors (404, 405), and
    request validation (a 400, not FastAPI's 422)."""
    return {
        ApiError: _on_api_error,
        StarletteHTTPException: _on_http_exception,
        RequestValidationError: _on_validation_error,
    }

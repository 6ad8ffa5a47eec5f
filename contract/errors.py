"""The status rules of CONTRACT.md, in one place.

Services raise the exceptions below (or Litestar's own); the handlers turn every failure into the
contract's error shape `{status_code, detail, extra?}` with the right status:
400 undecodable body, 422 invalid field (naming each), 401 with `WWW-Authenticate: Bearer`,
404, 405, 409, 413, 429 with rate-limit headers, 503 naming the dependency. Nothing else
becomes a 500 except a bug, and a bug's answer never carries a traceback.
"""

from __future__ import annotations

import logging
import re
from typing import Any, get_args

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    SerializationException,
    ValidationException,
)
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_409_CONFLICT,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Send

from contract.types import Interval, Timeframe

log = logging.getLogger("contract.errors")

MAX_BODY_BYTES = 1024 * 1024


class FieldError(HTTPException):
    """422: one field is invalid; `key` names it, the message says what is accepted."""

    status_code = HTTP_422_UNPROCESSABLE_ENTITY

    def __init__(self, key: str, message: str, source: str = "query") -> None:
        super().__init__(
            detail=f"Invalid {key}: {message}",
            extra=[{"key": key, "message": message, "source": source}],
        )


class NotFound(NotFoundException):
    """404: no such resource for this caller (another user's resource is 'none')."""


class Conflict(HTTPException):
    status_code = HTTP_409_CONFLICT


class Unauthorized(NotAuthorizedException):
    status_code = HTTP_401_UNAUTHORIZED


class RateLimited(HTTPException):
    status_code = HTTP_429_TOO_MANY_REQUESTS

    def __init__(self, limit: int, reset_seconds: int, detail: str = "Rate limit exceeded") -> None:
        super().__init__(
            detail=f"{detail}: at most {limit} requests per window; retry in {reset_seconds} s",
            headers={
                "Retry-After": str(reset_seconds),
                "RateLimit-Limit": str(limit),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(reset_seconds),
            },
        )


class DependencyDown(HTTPException):
    """503: a required dependency (e.g. the database for uncached data) does not answer."""

    status_code = HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self, dependency: str) -> None:
        super().__init__(detail=f"Service unavailable: the {dependency} does not answer")


def _body(status: int, detail: str, extra: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status_code": status, "detail": detail}
    if extra:
        body["extra"] = extra
    return body


_MISSING_RE = re.compile(r"Missing required (\w+) parameter '([^']+)'")
# What a closed set accepts, for messages that name only the bad value.
ACCEPTED: dict[str, tuple[str, ...]] = {
    "interval": get_args(Interval),
    "timeframe": get_args(Timeframe),
}


def _explain(entry: dict[str, Any]) -> dict[str, Any]:
    key = str(entry.get("key", ""))
    if key == "data":
        entry["key"] = key = "body"
    message = str(entry.get("message", ""))
    accepted = ACCEPTED.get(key.rsplit(".", 1)[-1])
    if accepted and message.startswith("Invalid enum value"):
        entry["message"] = f"{message}; accepted: {', '.join(accepted)}"
    return entry


def _unprocessable(fields: list[dict[str, Any]]) -> Response[Any]:
    names = ", ".join(str(f.get("key", "?")) for f in fields)
    return Response(
        _body(HTTP_422_UNPROCESSABLE_ENTITY, f"Invalid {names}", fields),
        status_code=HTTP_422_UNPROCESSABLE_ENTITY,
        media_type=MediaType.JSON,
    )


def _bad_body(detail: str) -> Response[Any]:
    return Response(
        _body(HTTP_400_BAD_REQUEST, detail),
        status_code=HTTP_400_BAD_REQUEST,
        media_type=MediaType.JSON,
    )


def _validation_handler(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    extra = exc.extra if isinstance(exc.extra, list) else None
    if extra:
        return _unprocessable(
            [
                _explain(dict(item) if isinstance(item, dict) else {"message": str(item)})
                for item in extra
            ]
        )
    missing = _MISSING_RE.search(exc.detail)
    if missing:
        source, key = missing.groups()
        return _unprocessable([{"key": key, "message": "required", "source": source}])
    # Litestar raises a bare ValidationException when the body is not decodable.
    return _bad_body(f"Body is not valid JSON: {exc.detail}")


def _undecodable_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return _bad_body("Body is not valid UTF-8 JSON")


def _too_deep_handler(_: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    # msgspec gives up on a body nested deeper than the interpreter's recursion limit.
    return _bad_body("Body is nested too deeply to decode")


def _http_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    headers = dict(exc.headers or {})
    if exc.status_code == HTTP_401_UNAUTHORIZED:
        headers.setdefault("WWW-Authenticate", "Bearer")
    detail = exc.detail
    if exc.status_code == HTTP_413_REQUEST_ENTITY_TOO_LARGE:
        detail = f"Body too large: at most 1 MiB ({MAX_BODY_BYTES} bytes) is accepted"
    return Response(
        _body(exc.status_code, detail, exc.extra if isinstance(exc.extra, list) else None),
        status_code=exc.status_code,
        headers=headers,
        media_type=MediaType.JSON,
    )


def _bug_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Response(
        _body(HTTP_500_INTERNAL_SERVER_ERROR, "Internal server error"),
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
        media_type=MediaType.JSON,
    )


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    ValidationException: _validation_handler,
    UnicodeDecodeError: _undecodable_handler,
    SerializationException: _undecodable_handler,
    RecursionError: _too_deep_handler,
    HTTPException: _http_handler,
    Exception: _bug_handler,
}

# Status codes each route documents in the OpenAPI, beside its success.
ERROR_DOCS_PUBLIC = (422, 429, 503)
ERROR_DOCS_AUTH = (401, 404, 409, 413, 422, 429, 503)


async def send_error(
    send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    """Answer an error from ASGI middleware (outside Litestar's handlers), in the same shape."""
    body = msgspec.json.encode(_body(status, detail))
    raw_headers = [(key.lower().encode(), value.encode()) for key, value in (headers or {}).items()]
    raw_headers += [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": raw_headers,
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)

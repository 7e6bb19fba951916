"""Every error a caller can get, and the one map from what went wrong to its HTTP status.

Routes raise domain errors (the job store's, storage's, or the API's own below); the guards in
front of FastAPI raise them too. `ERRORS` turns each into a status, a message and headers, and
every error body has the same shape: `{"detail": ..., "message": "what to fix"}`. Messages pass
through `serve_app.redact` on the way out: no filesystem path, URL, internal address or secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_app.jobs.errors import IdempotencyConflict, InvalidCursor, QueueFull, StoreUnavailable
from serve_app.redact import redact
from serve_app.storage.errors import LinkExpired, LinkInvalid, ObjectNotFound

STORE_RETRY_AFTER_S = 5


class ErrorBody(BaseModel):
    detail: str | list
    message: str = Field(description="Human-readable summary of what to fix.")


# -- the API's own errors --


class ApiError(Exception):
    """An error whose message is written for the caller."""


class Unauthorized(ApiError):
    def __init__(self) -> None:
        super().__init__("missing or invalid bearer token")


class JobNotFound(ApiError):
    def __init__(self) -> None:
        super().__init__("no such song job")


class WebhookRefused(ApiError):
    """A webhook_url that is malformed or points at an address webhooks may not reach."""


class SongStillRunning(ApiError):
    def __init__(self, job_id: str, waited_s: float) -> None:
        super().__init__(f"song {job_id} is still running after {waited_s:g} s; follow it at /v1/songs/{job_id}")


class SongWasCancelled(ApiError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"song {job_id} was cancelled")


class SongDidNotFinish(ApiError):
    """The song failed; the message is the job's own (safe) error."""


class BodyTooLarge(ApiError):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"request body exceeds {max_bytes} bytes")


class BadContentLength(ApiError):
    def __init__(self) -> None:
        super().__init__("invalid Content-Length")


class RateLimited(ApiError):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"rate limit exceeded; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class FieldInvalid(ApiError):
    """A value that is valid on its own but not for this request (a repaint range past the
    source's end, a task the model lacks): a 422 that names the field and what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class SourceNotFound(ApiError):
    def __init__(self, what: str) -> None:
        super().__init__(f"no such {what} (source)")


class SourceNotReady(ApiError):
    def __init__(self, song_id: str, status: str) -> None:
        super().__init__(f"source song {song_id} is {status}; only a succeeded song can be edited")


class UploadNotFound(ApiError):
    def __init__(self) -> None:
        super().__init__("no such upload")


class UploadRejected(ApiError):
    """An upload that is not usable audio (empty, corrupt, too long, unknown format)."""


class UnsupportedMediaType(ApiError):
    pass


class UploadsDirectOnly(ApiError):
    def __init__(self) -> None:
        super().__init__("this server's storage takes uploads directly: POST the file to /v1/uploads")


# -- the map --


@dataclass(frozen=True)
class Rule:
    status: int
    message: Callable[[Exception], str] = str
    headers: Callable[[Exception], dict[str, str]] | None = None
    redacted: bool = True  # False: the message only echoes the caller's own input (a webhook host)


def _retry_after(seconds: Callable[[Exception], int]) -> Callable[[Exception], dict[str, str]]:
    return lambda exc: {"Retry-After": str(seconds(exc))}


ERRORS: dict[type[Exception], Rule] = {
    Unauthorized: Rule(401, headers=lambda _: {"WWW-Authenticate": "Bearer"}),
    JobNotFound: Rule(404),
    SourceNotFound: Rule(404),
    UploadNotFound: Rule(404),
    SourceNotReady: Rule(409),
    FieldInvalid: Rule(422),
    UploadRejected: Rule(422),
    UnsupportedMediaType: Rule(415),
    UploadsDirectOnly: Rule(409),
    ObjectNotFound: Rule(404, lambda _: "no such object"),
    LinkExpired: Rule(403, lambda _: "link expired"),
    LinkInvalid: Rule(403, lambda _: "invalid link signature"),
    InvalidCursor: Rule(400, lambda _: "invalid cursor"),
    BadContentLength: Rule(400),
    IdempotencyConflict: Rule(409, lambda _: "this Idempotency-Key was already used with another body"),
    SongWasCancelled: Rule(409),
    BodyTooLarge: Rule(413),
    WebhookRefused: Rule(422, redacted=False),
    QueueFull: Rule(429, lambda e: f"too many songs queued; retry in {e.retry_after_s} s",
                    _retry_after(lambda e: e.retry_after_s)),
    RateLimited: Rule(429, headers=_retry_after(lambda e: e.retry_after_s)),
    SongDidNotFinish: Rule(502),
    # The store's own message names the database (URL, host): for the log, never for the caller.
    StoreUnavailable: Rule(503, lambda _: f"job store unavailable; retry in {STORE_RETRY_AFTER_S} s",
                           _retry_after(lambda _: STORE_RETRY_AFTER_S)),
    SongStillRunning: Rule(504),
}


def rule_for(exc: Exception) -> Rule | None:
    for cls in type(exc).__mro__:
        if cls in ERRORS:
            return ERRORS[cls]
    return None


def body(message: str, detail: str | list | None = None) -> dict:
    return {"detail": message if detail is None else detail, "message": message}


def describe(exc: Exception) -> tuple[int, dict, dict[str, str]]:
    """(status, body, headers) of a mapped error."""
    rule = rule_for(exc)
    if rule is None:
        raise TypeError(f"{type(exc).__name__} has no HTTP mapping")
    message = rule.message(exc)
    if rule.redacted:  # a storage/engine/decoder text may carry paths, URLs, addresses
        message = redact(message)
    return rule.status, body(message), rule.headers(exc) if rule.headers else {}


def response(exc: Exception) -> JSONResponse:
    status, content, headers = describe(exc)
    return JSONResponse(status_code=status, content=content, headers=headers)


async def send(asgi_send, exc: Exception) -> None:
    """The same response, for ASGI middleware that answers before FastAPI runs."""
    status, content, headers = describe(exc)
    data = json.dumps(content).encode()
    await asgi_send({"type": "http.response.start", "status": status,
                     "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                 *((k.lower().encode(), v.encode()) for k, v in headers.items())]})
    await asgi_send({"type": "http.response.body", "body": data})


def validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def install(api: FastAPI) -> None:
    """Register the handlers: the map's errors, request validation (422) and Starlette's own
    HTTP errors (the router's 404/405), all in the ErrorBody shape."""

    async def mapped(request: Request, exc: Exception) -> JSONResponse:
        return response(exc)

    for cls in ERRORS:
        api.add_exception_handler(cls, mapped)

    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k not in ("input", "ctx")} for e in exc.errors()]
        return JSONResponse(status_code=422, content=body(validation_message(exc), errors))

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail, "message": message},
                            headers=exc.headers)

    api.add_exception_handler(RequestValidationError, invalid)
    api.add_exception_handler(StarletteHTTPException, http_error)

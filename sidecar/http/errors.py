"""OpenAI-style error bodies, `{"error": {"message", "type", "param", "code"}}` (Anthropic's
`{"type": "error", "error": {"type", "message"}}` on the Messages API's paths), for every failure:
validation (400, not FastAPI's 422), and every SidecarError by its kind (`STATUS`: unknown model
404, bad request or oversize prompt 400, out of memory 503, ...)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from sidecar.errors import ErrorKind, SidecarError

log = logging.getLogger(__name__)

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    421: "invalid_request_error",
    503: "server_error",
}


STATUS = {
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.INVALID_REQUEST: 400,
    ErrorKind.CONTEXT_OVERFLOW: 400,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.LOAD_FAILED: 500,
    ErrorKind.CANCELLED: 503,
    ErrorKind.INTERNAL: 500,
}


class JSON(Response):
    """JSON rendered with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class OpenAIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": TYPES.get(self.status, "server_error"),
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSON:
        return JSON(self.body(), status_code=self.status, headers=self.headers)


# Anthropic's error types by status (its SDK picks the exception class by status).
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
ANTHROPIC_PATHS = ("/v1/messages",)


def anthropic_body(error: OpenAIError) -> dict[str, Any]:
    kind = ANTHROPIC_TYPES.get(error.status)
    if kind is None:
        kind = "api_error" if error.status >= 500 else "invalid_request_error"
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def shaped(error: OpenAIError, path: str) -> JSON:
    """The error in the shape of the API the path belongs to: Anthropic's for the Messages
    API, OpenAI's for everything else."""
    if path.startswith(ANTHROPIC_PATHS):
        return JSON(anthropic_body(error), status_code=error.status, headers=error.headers)
    return error.response()


def from_validation(errors: list[Any]) -> OpenAIError:
    """The first validation error as a 400, naming the offending field."""
    if not errors:
        return OpenAIError(400, "invalid request")
    # A union reports one error per member; the deepest one names what was really wrong.
    err = max(errors, key=lambda e: len(e.get("loc", ())))
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    if err.get("type") == "json_invalid":
        detail = (err.get("ctx") or {}).get("error") or err.get("msg", "")
        return OpenAIError(400, f"malformed JSON body: {detail}", code="invalid_json")
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    # Unions report one loc per member ("prompt.str", "prompt.list[int]"): keep the field.
    param = loc[0] if loc else None
    where = ".".join(p for p in loc if not p.startswith(("list[", "str", "int")))
    return OpenAIError(400, f"{where}: {msg}" if where else msg, param=param)


def from_exception(exc: BaseException, param: str | None = None) -> OpenAIError:
    """Any error as an HTTP error: a SidecarError by its kind (see sidecar/errors.py), a pydantic
    error as the 400 naming its field, anything else as a logged 500. `param` is the request
    field to blame when the error itself names none."""
    if isinstance(exc, OpenAIError):
        return exc
    if isinstance(exc, SidecarError):
        if exc.kind is ErrorKind.LOAD_FAILED:
            log.warning("%s", exc)
        # An upstream's error keeps the upstream's status (a wrong key's 401): `http_status`.
        status = getattr(exc, "http_status", None) or STATUS[exc.kind]
        return OpenAIError(status, str(exc), param=exc.param or param, code=exc.code)
    if isinstance(exc, ValidationError):
        return from_validation(exc.errors())
    log.error("request failed", exc_info=exc)
    return OpenAIError(500, f"internal error: {type(exc).__name__}: {exc}", code="internal_error")


def install(app: FastAPI) -> None:
    async def openai_error(request: Request, exc: Exception) -> Response:
        return shaped(from_exception(exc), request.url.path)

    async def validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return shaped(from_validation(list(exc.errors())), request.url.path)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {413: "request_too_large", 404: "not_found", 405: "method_not_allowed"}
        error = OpenAIError(
            exc.status_code, str(exc.detail), code=code.get(exc.status_code), headers=exc.headers
        )
        return shaped(error, request.url.path)

    app.add_exception_handler(OpenAIError, openai_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http_error)
    for exc_type in (SidecarError, ValidationError, Exception):
        app.add_exception_handler(exc_type, openai_error)

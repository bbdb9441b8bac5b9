"""Params for custom requests as pydantic models, and exceptions as JSON-RPC errors: bad params
-> -32602 naming the field; a SidecarError by its kind (`CODES`: unknown model or bad request
-32602, out of memory or hub failure -32001, load failure -32603, ...) with its message.

Every error carries its machine code in `error.data.code` (`model_not_found`,
`context_length_exceeded`, `insufficient_memory`, `invalid_params`, ...): clients branch on it,
never on the message. `data_code` fills it in for errors raised without one (pygls' own)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInternalError,
    JsonRpcInvalidParams,
    JsonRpcRequestCancelled,
    JsonRpcServerError,
)

from sidecar.errors import ErrorKind, SidecarError
from sidecar.limits import Limits

P = TypeVar("P", bound=BaseModel)


class Params(BaseModel):
    """Base for custom request params: snake_case or camelCase keys; unknown keys rejected;
    strict types (`"pin": "yes"` is an error, not true)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True
    )


def describe_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "params"
        parts.append(f"{field}: {err['msg']}")
    return "invalid params: " + "; ".join(parts)


def parse(model: type[P], params: Any, limits: Limits | None = None) -> P:
    """Validate request params (within `limits`); raise -32602 naming each bad field."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise JsonRpcInvalidParams("invalid params: params must be an object")
    try:
        return model.model_validate(params, context=limits)
    except ValidationError as e:
        fields = [".".join(str(p) for p in err["loc"]) for err in e.errors()]
        raise JsonRpcInvalidParams(
            describe_errors(e), data={"code": "invalid_params", "fields": fields}
        ) from None


# A SidecarError's kind as a JSON-RPC error (see sidecar/errors.py). -32001 is in the range
# JSON-RPC leaves to servers: the message says what the user can do (free memory, go online).
SERVER_ERROR = -32001
CODES: dict[ErrorKind, type[JsonRpcException] | int] = {
    ErrorKind.NOT_FOUND: JsonRpcInvalidParams,
    ErrorKind.INVALID_REQUEST: JsonRpcInvalidParams,
    ErrorKind.CONTEXT_OVERFLOW: JsonRpcInvalidParams,
    ErrorKind.UNAVAILABLE: SERVER_ERROR,
    ErrorKind.LOAD_FAILED: JsonRpcInternalError,
    ErrorKind.CANCELLED: JsonRpcRequestCancelled,
    ErrorKind.INTERNAL: JsonRpcInternalError,
}


# The machine code of an error raised without one, by its JSON-RPC code.
DEFAULT_CODES = {
    -32700: "parse_error",
    -32600: "invalid_request",
    -32601: "method_not_found",
    -32602: "invalid_params",
    -32603: "internal_error",
    -32002: "server_not_initialized",
    SERVER_ERROR: "unavailable",
    -32800: "cancelled",
}


def to_rpc(e: SidecarError) -> JsonRpcException:
    """The JSON-RPC error for `e` (pygls' own class where it has one, so callers can catch it),
    its machine code in `data.code` and the field to blame, when one is, in `data.param`."""
    data: dict[str, Any] = {"code": e.machine_code}
    if e.param is not None:
        data["param"] = e.param
    answer = CODES[e.kind]
    if isinstance(answer, int):
        return JsonRpcServerError(str(e), code=answer, data=data)
    return answer(str(e), data=data)


def data_code(code: int, data: Any) -> dict[str, Any]:
    """An error's `data` with a machine code: its own, else the default for its JSON-RPC code."""
    filled = dict(data) if isinstance(data, dict) else {}
    filled.setdefault("code", DEFAULT_CODES.get(code, "error"))
    return filled


@contextlib.contextmanager
def rpc_errors() -> Iterator[None]:
    """Turn the sidecar's errors into JSON-RPC errors by kind; other OS and value errors become
    internal errors that name their type (a traceback would say no more to the user)."""
    try:
        yield
    except SidecarError as e:
        raise to_rpc(e) from None
    except (OSError, ValueError, RuntimeError) as e:
        raise JsonRpcInternalError(
            f"{type(e).__name__}: {e}", data={"code": "internal_error"}
        ) from None

"""One error model for the whole sidecar: every error the user should read derives from
`SidecarError`, whose `kind` says what went wrong in wire terms. Each edge maps the kinds once
(`sidecar/http/errors.py` to an HTTP status, `sidecar/lsp/errors.py` to a JSON-RPC code), so a
new error class needs a kind, never a new branch at either edge.

    kind              HTTP   JSON-RPC   for
    not_found          404   -32602     a model (or id) the request names is not there
    invalid_request    400   -32602     the request cannot run as asked
    context_overflow   400   -32602     prompt + max_tokens exceed the model's context
    unavailable        503   -32001     something the server needs is short: memory, the hub
    load_failed        500   -32603     a model's files are there but do not load
    cancelled          503   -32800     the work was stopped before it finished
    internal           500   -32603     a bug or an unexpected failure

The message of a `SidecarError` is written for the user; `code` is the OpenAI-style machine
code on HTTP (`model_not_found`, `context_length_exceeded`, ...) and `param` the request field
to blame when the error always means one field (`model`); otherwise the edge names the field.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from sidecar.engine.requests import Result


class ErrorKind(StrEnum):
    NOT_FOUND = "not_found"
    INVALID_REQUEST = "invalid_request"
    CONTEXT_OVERFLOW = "context_overflow"
    UNAVAILABLE = "unavailable"
    LOAD_FAILED = "load_failed"
    CANCELLED = "cancelled"
    INTERNAL = "internal"


class SidecarError(Exception):
    """An error whose message is meant for the user."""

    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL
    code: ClassVar[str | None] = None
    param: ClassVar[str | None] = None


class NotFound(SidecarError):
    kind = ErrorKind.NOT_FOUND


class InvalidRequest(SidecarError):
    kind = ErrorKind.INVALID_REQUEST


class Unavailable(SidecarError):
    kind = ErrorKind.UNAVAILABLE


class LoadFailed(SidecarError):
    kind = ErrorKind.LOAD_FAILED


class GenerationFailed(SidecarError):
    """A generation that ended with finish_reason "error" (the model or sampler failed)."""

    kind = ErrorKind.INTERNAL


class OverMemoryBudget(InvalidRequest):
    """A request whose KV cache would not fit the memory budget even with nothing else running
    (see sidecar/engine/memory.py): fewer max_tokens or a shorter prompt fits."""

    code = "insufficient_memory"
    param = "max_tokens"


class OutOfMemory(Unavailable):
    """MLX ran out of memory in a step: its requests failed, the engine serves on."""

    code = "out_of_memory"


RESULT_ERRORS: dict[str | None, type[SidecarError]] = {
    OverMemoryBudget.code: OverMemoryBudget,
    OutOfMemory.code: OutOfMemory,
}


def result_error(result: Result) -> SidecarError | None:
    """The rule for a Result that ended in error, in one place: the error to answer it with, so
    each edge raises it like any other failure (None for any other finish)."""
    if result.finish_reason != "error":
        return None
    message = result.error or "unknown error"
    known = RESULT_ERRORS.get(result.error_code)
    if known is not None:
        return known(message)
    return GenerationFailed(f"generation failed: {message}")

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

The message of a `SidecarError` is written for the user; `code` is its machine code
(`model_not_found`, `context_length_exceeded`, `insufficient_memory`, ...): the OpenAI body's
`error.code` on HTTP, `error.data.code` on JSON-RPC (the kind's name when the class has none),
so clients branch on it, never on the message. `param` is the request field to blame when the
error always means one field (`model`); otherwise the edge names the field.

Every error class of the sidecar is here (the edges' own, transport-level ones aside), so the
list of codes a client can meet is this file.
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
    param: str | None = None  # per class, or per error where one class means several fields

    def __init__(self, message: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        if param is not None:
            self.param = param

    @property
    def machine_code(self) -> str:
        """The code clients branch on: the class's own, else its kind's name."""
        return self.code or self.kind.value


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


class InsufficientMemory(Unavailable):
    """The memory budget refuses the work: a model that does not fit beside the pinned and busy
    ones (or at all), a request whose KV cache or images would not fit even with nothing else
    running (see sidecar/engine/memory.py). One name, one answer on both edges: 503
    `insufficient_memory` / -32001, whose message says what fits (fewer max_tokens, a smaller
    model, a larger budget); `param` names the field when one is to blame."""

    code = "insufficient_memory"


class OutOfMemory(Unavailable):
    """MLX ran out of memory in a step: its requests failed, the engine serves on."""

    code = "out_of_memory"


class ContextOverflow(SidecarError):
    """Prompt and max_tokens over the model's context, found while the request ran (a vision
    prompt's length is known once its images are processed)."""

    kind = ErrorKind.CONTEXT_OVERFLOW
    code = "context_length_exceeded"


# -- the domain's errors, by where they arise ------------------------------------------------


class ModelNotFoundError(NotFound, LookupError):
    """No local model has this id."""

    code = "model_not_found"
    param = "model"


class InvalidModelIdError(NotFound, ValueError):
    """The id is not a valid model id (e.g. it climbs out of the store with '..'); answered as
    not found, since no model can have it."""

    code = "model_not_found"
    param = "model"


class ModelLoadError(LoadFailed, RuntimeError):
    """A model's files are there but do not load (corrupt weights, bad config)."""

    code = "model_load_failed"
    param = "model"


class EngineError(InvalidRequest):
    """A request the engine cannot run; the message is meant for the user."""


class WrongModelKindError(EngineError):
    """The request names a model of another kind (chat on an embedding model, ...)."""

    code = "wrong_model_kind"
    param = "model"


class ImagesNotSupported(EngineError):
    """Images sent to a model that does not take them (the editor offers a vision model)."""

    code = "images_not_supported"


class PromptTooLongError(EngineError):
    kind = ErrorKind.CONTEXT_OVERFLOW
    code = "context_length_exceeded"

    def __init__(self, prompt_tokens: int, max_tokens: int, context: int) -> None:
        super().__init__(
            f"prompt has {prompt_tokens} tokens and asks for {max_tokens} more, "
            f"over the model's context of {context} tokens"
        )
        self.prompt_tokens = prompt_tokens
        self.context = context


class HubError(Unavailable):
    """A hub operation failed (missing, gated, offline, network); the message is for the user."""

    code = "hub_error"


class DownloadCancelledError(HubError):
    kind = ErrorKind.CANCELLED
    code = "cancelled"


class IndexCancelled(SidecarError):
    kind = ErrorKind.CANCELLED


class KeyringUnavailable(Unavailable):
    code = "keyring_unavailable"


class UpstreamError(SidecarError):
    """An upstream answered with an error, or could not be reached. `http_status` is what the
    OpenAI port answers (the upstream's own status for its 4xx and 5xx, 502/503/504 when there
    was no answer); the JSON-RPC edge maps `kind` like any other error."""

    kind = ErrorKind.UNAVAILABLE

    def __init__(
        self, upstream: str, message: str, http_status: int = 502, code: str | None = None
    ) -> None:
        super().__init__(f"upstream {upstream!r}: {message}")
        self.upstream = upstream
        self.http_status = http_status
        self.error_code = code or "upstream_error"

    @property
    def code(self) -> str:  # type: ignore[override]  # the upstream's own code when it sent one
        return self.error_code


class UpstreamRejected(UpstreamError):
    """A 4xx other than auth and rate limits: the request itself was wrong for the upstream."""

    kind = ErrorKind.INVALID_REQUEST


RESULT_ERRORS: dict[str | None, type[SidecarError]] = {
    ContextOverflow.code: ContextOverflow,
    InsufficientMemory.code: InsufficientMemory,
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
        # A refused request fits with fewer max_tokens (the memory governor's refusal).
        return known(message, param="max_tokens" if known is InsufficientMemory else None)
    return GenerationFailed(f"generation failed: {message}")

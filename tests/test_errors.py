"""One error model: each domain error's kind gives its HTTP status and JSON-RPC code, mapped once
per edge; the existing HTTP codes stay what clients rely on."""

from __future__ import annotations

import pytest
from pygls.exceptions import JsonRpcException

from sidecar.engine.requests import Result
from sidecar.errors import (
    DownloadCancelledError,
    EngineError,
    ErrorKind,
    GenerationFailed,
    HubError,
    ImagesNotSupported,
    InsufficientMemory,
    InvalidModelIdError,
    ModelLoadError,
    ModelNotFoundError,
    OutOfMemory,
    PromptTooLongError,
    SidecarError,
    WrongModelKindError,
    result_error,
)
from sidecar.http.errors import STATUS, from_exception
from sidecar.lsp.errors import CODES, rpc_errors
from sidecar.models.defaults import DefaultModelsMissing
from sidecar.models.gguf import GGUFImportError

# error, HTTP status, HTTP code, HTTP param, JSON-RPC code, JSON-RPC data.code
CASES = [
    (ModelNotFoundError("model 'x' not found"), 404, "model_not_found", "model", -32602, None),
    (InvalidModelIdError("invalid model id '..'"), 404, "model_not_found", "model", -32602, None),
    (PromptTooLongError(9000, 4, 8192), 400, "context_length_exceeded", "prompt", -32602, None),
    (WrongModelKindError("an embedding model"), 400, "wrong_model_kind", "model", -32602, None),
    (ImagesNotSupported("no images"), 400, "images_not_supported", "prompt", -32602, None),
    (EngineError("max_tokens must be at least 1"), 400, None, "prompt", -32602, "invalid_request"),
    (GGUFImportError("not a GGUF file"), 400, None, "prompt", -32602, "invalid_request"),
    (InsufficientMemory("need 9 GiB"), 503, "insufficient_memory", "prompt", -32001, None),
    (DefaultModelsMissing("pip install"), 503, None, "prompt", -32001, "unavailable"),
    (HubError("cannot reach the hub"), 503, "hub_error", "prompt", -32001, None),
    (DownloadCancelledError("cancelled"), 503, "cancelled", "prompt", -32800, None),
    (ModelLoadError("bad weights"), 500, "model_load_failed", "model", -32603, None),
    (GenerationFailed("generation failed: boom"), 500, None, "prompt", -32603, "internal"),
    (
        InsufficientMemory("KV needs 45 MiB", param="max_tokens"),
        503,
        "insufficient_memory",
        "max_tokens",
        -32001,
        None,
    ),
    (OutOfMemory("out of memory during generation"), 503, "out_of_memory", "prompt", -32001, None),
]


@pytest.mark.parametrize(("error", "status", "code", "param", "rpc", "rpc_code"), CASES)
def test_each_error_maps_once_per_edge(
    error: SidecarError, status: int, code: str | None, param: str, rpc: int, rpc_code: str | None
) -> None:
    """Each error has one HTTP status and body code, and one JSON-RPC code whose `data.code` is
    the same machine code (the kind's name for the classes that have none)."""
    http = from_exception(error, param="prompt")
    assert (http.status, http.code, http.param, http.message) == (status, code, param, str(error))
    with pytest.raises(JsonRpcException) as raised, rpc_errors():
        raise error
    assert (raised.value.code, raised.value.message) == (rpc, str(error))
    data = raised.value.data
    assert isinstance(data, dict) and data["code"] == (rpc_code or code)


def test_every_kind_has_an_answer_at_both_edges() -> None:
    assert set(STATUS) == set(CODES) == set(ErrorKind)


def test_other_exceptions_are_internal_errors_without_tracebacks() -> None:
    http = from_exception(KeyError("k"))
    assert (http.status, http.code) == (500, "internal_error")
    with pytest.raises(JsonRpcException) as raised, rpc_errors():
        raise OSError("disk full")
    assert raised.value.code == -32603 and "OSError: disk full" in raised.value.message
    assert raised.value.data == {"code": "internal_error"}


def test_a_result_that_ended_in_error_is_an_error_everywhere() -> None:
    def result(reason: str, error: str | None = None) -> Result:
        return Result("r", "m", "", reason, 1, 0, None, None, error=error)  # type: ignore[arg-type]

    failed = result_error(result("error", "the sampler broke"))
    assert isinstance(failed, GenerationFailed)
    assert str(failed) == "generation failed: the sampler broke"
    assert from_exception(failed).status == 500
    assert all(result_error(result(r)) is None for r in ("stop", "length", "cancelled"))


def test_a_result_refused_or_out_of_memory_keeps_its_code() -> None:
    """The memory governor's refusal and an MLX allocation failure reach both edges as their
    own errors (503 insufficient_memory naming max_tokens, 503 out_of_memory), not as a
    generic 500."""
    for code, kind, status in (
        ("insufficient_memory", InsufficientMemory, 503),
        ("out_of_memory", OutOfMemory, 503),
    ):
        result = Result("r", "m", "", "error", 1, 0, None, None, error="why", error_code=code)
        failed = result_error(result)
        assert isinstance(failed, kind) and str(failed) == "why"
        assert from_exception(failed).status == status

"""The JSON-RPC transport on stdin: frames `Content-Length` messages robustly and hands each
parsed message to `protocol.handle_message`, the entry pygls' own reader uses.

Why not pygls' `run_async` + `StdinAsyncReader`: one bad frame ends the session in it. A
`Content-Length` that is too short leaves the rest of the body where the next header should be,
and its header parser then never matches again (every later request goes unanswered); an absurd
length is handed to `read(n)` (MemoryError); invalid JSON, or a typed method whose params fail
lsprotocol's converter, is only logged and shown with `window/showMessage`, so the client's
request waits forever. Here:
- a frame that cannot be parsed is answered with -32700, one that is not a request with -32600
  (with its id where one is known, null otherwise, as JSON-RPC 2.0 says), typed params that
  do not convert with -32602 and the request's id;
- a length over `max_message_bytes` is refused (-32600) and never allocated;
- after any bad frame the reader resynchronises on the next `Content-Length` header, also one
  that a too-long length swallowed into the body.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

import cattrs
from pygls.protocol import JsonRPCNotification, JsonRPCProtocol, JsonRPCRequestMessage

from sidecar.lsp.errors import data_code
from sidecar.lsp.framing import (  # noqa: F401  (Framer and FrameError are used from here too)
    INVALID_REQUEST,
    PARSE_ERROR,
    READ_CHUNK,
    FrameError,
    Framer,
)

log = logging.getLogger(__name__)

INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


def valid_id(value: Any) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def envelope_error(msg: Any) -> FrameError | None:
    """-32600 for JSON that is not a JSON-RPC 2.0 request, notification or response."""
    if not isinstance(msg, dict):
        kind = "a batch (not used by LSP)" if isinstance(msg, list) else type(msg).__name__
        return FrameError(INVALID_REQUEST, f"invalid request: a message is an object, not {kind}")
    rid = msg.get("id") if valid_id(msg.get("id")) else None
    if msg.get("jsonrpc") != "2.0":
        return FrameError(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"', rid)
    if "id" in msg and rid is None:
        return FrameError(INVALID_REQUEST, 'invalid request: "id" must be an integer or a string')
    if "method" in msg:
        if not isinstance(msg["method"], str):
            return FrameError(INVALID_REQUEST, 'invalid request: "method" must be a string', rid)
        if "params" in msg and not isinstance(msg["params"], dict | list | None):
            return FrameError(
                INVALID_REQUEST, 'invalid request: "params" must be an object or an array', rid
            )
        return None
    if rid is not None and ("result" in msg or "error" in msg):
        return None  # a response to one of our requests
    return FrameError(INVALID_REQUEST, 'invalid request: no "method"', rid)


def send_error(protocol: JsonRPCProtocol, error: FrameError) -> None:
    # A plain dict: pygls' converter would drop a null id, which JSON-RPC requires here.
    body = {"code": error.code, "message": error.message, "data": data_code(error.code, None)}
    protocol._send_data({"jsonrpc": "2.0", "id": error.id, "error": body})


def describe(exc: Exception) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(m.replace("$.params", "params") for m in cattrs.transform_error(exc))
    return f"{type(exc).__name__}: {exc}"


class StructureError(Exception):
    def __init__(self, error: FrameError) -> None:
        super().__init__(error.message)
        self.error = error


def structure(protocol: JsonRPCProtocol, msg: dict[str, Any]) -> Any:
    """The typed message pygls' handlers expect (what `protocol.structure_message` makes, minus
    its traceback log); raises a FrameError for a request whose params do not convert."""
    if "method" not in msg:
        return protocol.structure_message(msg)
    method, rid = msg["method"], msg.get("id")
    fallback = JsonRPCRequestMessage if "id" in msg else JsonRPCNotification
    cls = protocol.get_message_type(method) or fallback
    try:
        return protocol._converter.structure(msg, cls)
    except Exception as e:
        raise StructureError(
            FrameError(INVALID_PARAMS, f"invalid params for {method}: {describe(e)}", rid)
        ) from e


def answerable(item: Any) -> bool:
    """Notifications and responses are never answered, not even malformed ones."""
    if not isinstance(item, dict):
        return True
    if "method" in item:
        return "id" in item
    return "result" not in item and "error" not in item


def dispatch(protocol: JsonRPCProtocol, item: Any) -> None:
    """Hand one parsed value to pygls, or answer why it is not a message."""
    error: FrameError | None = item if isinstance(item, FrameError) else envelope_error(item)
    if error is None:
        try:
            protocol.handle_message(structure(protocol, item))
            return
        except StructureError as e:
            error = e.error
        except Exception as e:  # pygls answers handler errors itself: this is a bug here
            log.exception("could not handle a message")
            error = FrameError(INTERNAL_ERROR, describe(e), item.get("id"))
    assert error is not None  # every branch above that did not return set it
    if isinstance(item, FrameError) or answerable(item):
        log.warning("answered %d: %s", error.code, error.message)
        send_error(protocol, error)
    else:
        log.warning("dropped a message: %s", error.message)


async def serve_stdin(stdin: BinaryIO, protocol: JsonRPCProtocol, max_message_bytes: int) -> None:
    """Read frames from `stdin` and dispatch them until end of input."""
    loop = asyncio.get_running_loop()
    read = getattr(stdin, "read1", stdin.read)
    framer = Framer(max_message_bytes)
    # A thread of its own: a read blocks, and the default executor is joined at loop close.
    pool = ThreadPoolExecutor(1, thread_name_prefix="stdin")
    try:
        while data := await loop.run_in_executor(pool, read, READ_CHUNK):
            for item in framer.feed(data):
                dispatch(protocol, item)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if framer.pending():
        log.warning("end of input inside a frame (%d bytes)", framer.pending())


async def serve_stream(
    reader: asyncio.StreamReader, protocol: JsonRPCProtocol, max_message_bytes: int
) -> None:
    """`serve_stdin` for an asyncio stream (a daemon's socket connection)."""
    framer = Framer(max_message_bytes)
    while data := await reader.read(READ_CHUNK):
        for item in framer.feed(data):
            dispatch(protocol, item)
    if framer.pending():
        log.warning("end of input inside a frame (%d bytes)", framer.pending())

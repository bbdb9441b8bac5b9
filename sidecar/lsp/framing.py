"""Content-Length framing of a JSON-RPC byte stream, on its own (no pygls): the transport
(`sidecar.lsp.transport`) dispatches what it yields, and `stdio --attach` (`sidecar.daemon.bridge`)
uses it to follow requests and replies without loading the server's modules. Why it is
hand-written, and what it does with bad frames: see `sidecar.lsp.transport`."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
MAX_HEADER_BYTES = 8192  # header bytes without the blank line that ends them: junk, dropped
READ_CHUNK = 1 << 16
HEADER = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)
HEADER_END = b"\r\n\r\n"
MORE = object()  # the framer needs more bytes (a body may be JSON null, so not None)


@dataclass
class FrameError:
    """A frame that is not a message: answered with `code` (id null unless known)."""

    code: int
    message: str
    id: int | str | None = None


class Framer:
    """Splits a byte stream into JSON values. `feed` returns, in order, the parsed bodies and
    a `FrameError` for each bad frame; bytes that are neither are dropped until the next
    `Content-Length` header."""

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self.buffer = bytearray()
        self.length: int | None = None  # of the body being read; None while in headers

    def feed(self, data: bytes) -> list[Any]:
        self.buffer += data
        out: list[Any] = []
        while (item := self._next()) is not MORE:
            out.append(item)
        return out

    def pending(self) -> int:
        return len(self.buffer)

    def _next(self) -> Any:
        if self.length is None:
            return self._header()
        if len(self.buffer) < self.length:
            return MORE
        body = bytes(self.buffer[: self.length])
        del self.buffer[: self.length]
        self.length = None
        return self._parse(body)

    def _header(self) -> Any:
        while True:
            end = self.buffer.find(HEADER_END)
            if end < 0:
                self._drop_junk()
                return MORE
            block = bytes(self.buffer[:end])
            del self.buffer[: end + len(HEADER_END)]
            found = list(HEADER.finditer(block))
            if not found:
                if block.strip():
                    return FrameError(PARSE_ERROR, "parse error: a header without Content-Length")
                continue  # blank lines between frames
            last = found[-1]
            if block[: last.start()].strip():
                log.warning("dropped %d bytes before a Content-Length header", last.start())
            value = block[last.end() :].split(b"\r\n", 1)[0].strip()
            shown = value[:40].decode("ascii", "replace")
            if not value.isdigit():
                return FrameError(PARSE_ERROR, f"parse error: Content-Length {shown!r}")
            if len(value) > 18 or int(value) > self.max_message_bytes:
                # Not read, not skipped: the sender may never send that many bytes.
                return FrameError(
                    INVALID_REQUEST,
                    f"message of {shown} bytes refused: the limit is "
                    f"{self.max_message_bytes} (setting max_message_bytes)",
                )
            self.length = int(value)
            return self._next()

    def _drop_junk(self) -> None:
        """Without a blank line in sight, keep at most a header's worth of bytes: from the last
        `Content-Length` if it is that recent, else only what could start one."""
        if len(self.buffer) <= MAX_HEADER_BYTES:
            return
        found = [m.start() for m in HEADER.finditer(self.buffer)]
        keep = len(self.buffer) - len(b"content-length:") + 1
        if found and found[-1] >= len(self.buffer) - MAX_HEADER_BYTES:
            keep = found[-1]
        if keep > 0:
            log.warning("dropped %d bytes that are not a JSON-RPC frame", keep)
            del self.buffer[:keep]

    def _parse(self, body: bytes) -> Any:
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as e:
            # A length too long swallows (the start of) the next frame's header: read on there.
            if (start := resync_point(body)) is not None:
                self.buffer[:0] = body[start:]
            reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
            return FrameError(PARSE_ERROR, f"parse error: {reason}")


def resync_point(body: bytes) -> int | None:
    """Where a `Content-Length` header starts in `body`, or a cut one ends it."""
    if (inner := HEADER.search(body)) is not None:
        return inner.start()
    token = b"content-length:"
    tail = body[-len(token) :].lower()
    for i in range(len(tail)):
        if token.startswith(tail[i:]):
            return len(body) - len(tail) + i
    return None

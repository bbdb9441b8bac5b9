"""`mlx-sidecar stdio --attach`: stdin/stdout bridged to a session on the machine's daemon (started
when none runs), for clients that can only spawn a process.

The bytes pass through unchanged; the bridge also frames both directions (with the transport's
`Framer`) only to know which of the client's requests are unanswered: if the daemon dies, each
gets an error reply (-32001, saying so) and the client a `window/showMessage`, instead of
waiting forever, and the bridge exits 1 so the client's restart starts a new daemon."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

from sidecar.config import Settings
from sidecar.daemon.client import connect_or_start
from sidecar.lsp.framing import READ_CHUNK, Framer  # no pygls: the bridge stays small

log = logging.getLogger(__name__)
DAEMON_GONE = -32001
CLOSE_TIMEOUT_S = 10.0
GONE_MESSAGE = (
    "the mlx-sidecar daemon closed the connection (it exited or was killed); "
    "restart the client to start a new one"
)


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class Bridge:
    def __init__(self, stdin: BinaryIO, stdout: BinaryIO, max_message_bytes: int) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.up = Framer(max_message_bytes)
        self.down = Framer(max_message_bytes)
        self.pending: set[int | str] = set()  # the client's requests not answered yet
        self.shutdown_sent = False
        self.exit_sent = False

    def saw_from_client(self, item: Any) -> None:
        if not isinstance(item, dict) or not isinstance(method := item.get("method"), str):
            return
        if "id" in item and isinstance(item["id"], int | str):
            self.pending.add(item["id"])
        self.shutdown_sent |= method == "shutdown"
        self.exit_sent |= method == "exit"

    def saw_from_daemon(self, item: Any) -> None:
        if isinstance(item, dict) and "method" not in item:
            self.pending.discard(item.get("id"))  # a response

    async def upstream(self, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        read = getattr(self.stdin, "read1", self.stdin.read)
        pool = ThreadPoolExecutor(1, thread_name_prefix="stdin")  # a read blocks
        try:
            while data := await loop.run_in_executor(pool, read, READ_CHUNK):
                for item in self.up.feed(data):
                    self.saw_from_client(item)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()  # the daemon ends this session, then closes
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    async def downstream(self, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(READ_CHUNK):
            for item in self.down.feed(data):
                self.saw_from_daemon(item)
            self.stdout.write(data)

    def tell_client_daemon_gone(self) -> None:
        """Answer every open request and show the reason once."""
        for rid in sorted(self.pending, key=str):
            error = {"code": DAEMON_GONE, "message": GONE_MESSAGE}
            self.stdout.write(frame({"jsonrpc": "2.0", "id": rid, "error": error}))
        self.pending.clear()
        params = {"type": 1, "message": f"MLX Sidecar: {GONE_MESSAGE}"}
        self.stdout.write(
            frame({"jsonrpc": "2.0", "method": "window/showMessage", "params": params})
        )

    async def run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
        up = asyncio.ensure_future(self.upstream(writer))
        down = asyncio.ensure_future(self.downstream(reader))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            client_left = up.done() and not up.cancelled() and up.exception() is None
            if client_left and not down.done():  # let the daemon end the session
                with contextlib.suppress(TimeoutError, ConnectionError):
                    await asyncio.wait_for(asyncio.shield(down), CLOSE_TIMEOUT_S)
                return 0
            if self.exit_sent:  # the session ended as the client asked (LSP exit codes)
                return 0 if self.shutdown_sent else 1
            log.error("%s", GONE_MESSAGE)
            self.tell_client_daemon_gone()
            return 1
        finally:
            for task in (up, down):
                task.cancel()
            writer.close()


async def attach(
    settings: Settings, http_port: int | None, stdin: BinaryIO, stdout: BinaryIO
) -> int:
    reader, writer = await connect_or_start(settings, http_port)
    return await Bridge(stdin, stdout, settings.max_message_bytes).run(reader, writer)

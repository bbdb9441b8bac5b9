"""Run one language server session over a byte stream until `exit`, end of input or the client's
death: the stdio process runs one (`sidecar.lsp.stdio`), the daemon one per connection
(`sidecar.daemon.server`), all on one engine.

A session's end frees what it holds and nothing else: its requests in flight (chat streams,
downloads) are cancelled, its completion generations abandoned, its parent watch stopped; the
engine and the other sessions keep running."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, cast

from sidecar.lsp.lifecycle import ClientLogHandler
from sidecar.lsp.session import SidecarServer
from sidecar.lsp.transport import serve_stream

log = logging.getLogger(__name__)
END_TIMEOUT_S = 5.0


class StreamWriter:
    """pygls' writer interface (`write`, `close`) on an asyncio stream."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


async def run_session(server: SidecarServer, rpc: Coroutine[Any, Any, None], writer: Any) -> int:
    """Serve `server` with `rpc` (the read loop) and `writer`; return the exit code."""
    handler = ClientLogHandler(server, asyncio.get_running_loop(), logging.WARNING)
    logging.getLogger("sidecar").addHandler(handler)
    server.protocol.set_writer(writer)
    reading = asyncio.ensure_future(rpc)
    stop = asyncio.ensure_future(server.stop_requested.wait())
    code = 0
    try:
        await asyncio.wait({reading, stop}, return_when=asyncio.FIRST_COMPLETED)
        if reading.done() and not reading.cancelled() and reading.exception() is not None:
            exc = reading.exception()
            if isinstance(exc, ConnectionError):
                log.info("the client's connection broke: %r", exc)
            else:
                log.error("the JSON-RPC loop failed: %r", exc)
                code = 1
        else:
            code = server.exit_code  # 0 at end of input or when the parent died
    finally:
        for task in (reading, stop):
            task.cancel()
        logging.getLogger("sidecar").removeHandler(handler)
        await end_session(server)
    return code


async def end_session(server: SidecarServer) -> None:
    """Free what this session holds on the shared engine."""
    if server.watch_task is not None:
        server.watch_task.cancel()
    pending = list(server.protocol._request_futures.values())
    server.protocol._request_futures.clear()
    for future in pending:
        future.cancel()
    # pygls types them as concurrent futures; the async handlers' are asyncio ones.
    waiting = [cast("asyncio.Future[Any]", f) for f in pending if isinstance(f, asyncio.Future)]
    if waiting:  # bounded: a handler that ignores its cancellation must not hold the lease
        await asyncio.wait(waiting, timeout=END_TIMEOUT_S)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.completions.close(), END_TIMEOUT_S)


async def serve_connection(
    server: SidecarServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> int:
    """One session on a socket connection; the caller closes the connection."""
    rpc = serve_stream(reader, server.protocol, server.settings.max_message_bytes)
    return await run_session(server, rpc, StreamWriter(writer))

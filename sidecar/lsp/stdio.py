"""Run a built language server on stdio, until `exit`, end of input or the parent's death.

stdout belongs to the JSON-RPC transport alone: the real stdout is kept for it and file
descriptor 1 is pointed at stderr, so a stray print (or a C library) cannot corrupt a message.
What else runs in the process (the engine, an OpenAI port) is composed by the caller
(`sidecar.cli.stdio_cmd`); this package knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from typing import BinaryIO

from pygls.exceptions import JsonRpcException
from pygls.io_ import StdoutWriter

from sidecar.lsp.session import SidecarServer
from sidecar.lsp.stdout import claim_stdout  # noqa: F401  (the stdio runner's first step)
from sidecar.lsp.streams import run_session
from sidecar.lsp.transport import serve_stdin

log = logging.getLogger(__name__)


class ExpectedErrors(logging.Filter):
    """Drop pygls' tracebacks for errors the handlers raise on purpose (bad params, unknown
    model, cancelled): the client gets them as error responses; real failures still log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, JsonRpcException | asyncio.CancelledError)


def quiet_pygls() -> None:
    """pygls logs every message whole at INFO: keep it at WARNING or above."""
    pygls_log = logging.getLogger("pygls")
    pygls_log.setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    logging.getLogger("pygls.protocol.json_rpc").addFilter(ExpectedErrors())


async def serve(server: SidecarServer, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Serve JSON-RPC on stdin/stdout; return the exit code (the caller closes what it made)."""
    rpc = serve_stdin(stdin, server.protocol, server.settings.max_message_bytes)
    return await run_session(server, rpc, StdoutWriter(stdout))

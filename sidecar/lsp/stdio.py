"""Run the language server on stdio, with the engine (and optionally the OpenAI port) on the
same asyncio loop.

stdout belongs to the JSON-RPC transport alone: the real stdout is kept for it and file
descriptor 1 is pointed at stderr, so a stray print (or a C library) cannot corrupt a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import sys
import threading
from typing import Any, BinaryIO

from pygls.exceptions import JsonRpcException
from pygls.io_ import StdinAsyncReader, StdoutWriter, run_async

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.lsp.lifecycle import ClientLogHandler
from sidecar.lsp.server import build_server
from sidecar.lsp.session import SidecarServer

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 5.0


def claim_stdout() -> BinaryIO:
    """A private handle on the real stdout; fd 1 and sys.stdout now go to stderr."""
    transport = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return transport


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


async def start_http_for(engine: Engine, settings: Settings, port: int) -> tuple[Any, str]:
    if importlib.util.find_spec("sidecar.http.server") is None:
        raise RuntimeError("this build has no OpenAI port (sidecar.http.server is missing)")
    from sidecar.http.security import read_api_key
    from sidecar.http.server import serve_http

    api_key = read_api_key(settings.api_key, settings.api_key_file)
    http = await serve_http(engine, settings.http_host, port, api_key=api_key)
    return http, http.url


async def serve(
    settings: Settings, http_port: int | None, stdin: BinaryIO, stdout: BinaryIO
) -> int:
    """Serve until `exit`, end of input, or the parent's death; return the exit code."""
    engine = Engine(settings)
    await engine.start()
    server = build_server(engine, settings)
    http_servers: list[Any] = []

    async def start_http(port: int) -> str:
        http, url = await start_http_for(engine, settings, port)
        http_servers.append(http)
        return url

    server.start_http = start_http
    if http_port is not None:
        try:
            server.http_url = await start_http(http_port)
            log.warning("OpenAI API on %s/v1", server.http_url)
        except Exception as e:  # a busy port or a refused bind must not stop the editor's server
            log.error("could not start the OpenAI port on %s: %s", http_port, e)

    handler = ClientLogHandler(server, asyncio.get_running_loop(), logging.WARNING)
    logging.getLogger("sidecar").addHandler(handler)
    server._stop_event = stop_event = threading.Event()
    server.protocol.set_writer(StdoutWriter(stdout))
    reader = StdinAsyncReader(stdin, server.thread_pool)
    rpc = asyncio.ensure_future(
        run_async(
            stop_event=stop_event,
            reader=reader,
            protocol=server.protocol,
            logger=logging.getLogger("pygls.io"),
            error_handler=server.report_server_error,
        )
    )
    stop = asyncio.ensure_future(server.stop_requested.wait())
    code = 0
    try:
        await asyncio.wait({rpc, stop}, return_when=asyncio.FIRST_COMPLETED)
        if rpc.done() and rpc.exception() is not None:
            log.error("the JSON-RPC loop failed: %r", rpc.exception())
            code = 1
        else:
            code = server.exit_code  # 0 at end of input or when the parent died
    finally:
        stop_event.set()
        for task in (rpc, stop):
            task.cancel()
        logging.getLogger("sidecar").removeHandler(handler)
        await shutdown(server, engine, http_servers)
    return code


async def shutdown(server: SidecarServer, engine: Engine, http_servers: list[Any]) -> None:
    if server.watch_task is not None:
        server.watch_task.cancel()
    for http in http_servers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(http.stop(), CLOSE_TIMEOUT_S)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(engine.close(), CLOSE_TIMEOUT_S)


def run_stdio(settings: Settings, http_port: int | None = None) -> int:
    transport = claim_stdout()
    quiet_pygls()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    code = 1
    try:
        code = runner(serve(settings, http_port, sys.stdin.buffer, transport))
    except KeyboardInterrupt:
        code = 130
    finally:
        sys.stderr.flush()
    # The stdin reader thread may be blocked in read(); it must not keep the process alive.
    os._exit(code)

"""`mlx-sidecar stdio`: JSON-RPC (LSP) on stdio for the editor; `--http-port` (or the editor's
`httpPort` setting) also serves the OpenAI API from the same engine.

The two edges are peers: this module makes the engine, the language server and, when asked,
the OpenAI port, and closes them; the language server only gets a `start_http` callable."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import os
import sys
from typing import Any, BinaryIO

from sidecar import tracing
from sidecar.config import Settings

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 5.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stdio", help="JSON-RPC language server on stdio for the editor")
    p.add_argument("--http-port", type=int, default=None, help="also serve the OpenAI API here")
    p.set_defaults(run=run)


async def serve(
    settings: Settings, http_port: int | None, stdin: BinaryIO, stdout: BinaryIO
) -> int:
    from sidecar.engine.engine import Engine
    from sidecar.lsp import stdio
    from sidecar.lsp.server import build_server
    from sidecar.roles import Roles
    from sidecar.upstreams.router import Router
    from sidecar.usage.store import open_usage

    usage = open_usage(settings.usage_db, settings.prices, settings.usage)
    engine = Engine(settings, usage=usage)
    await engine.start()
    roles = Roles.from_settings(settings)  # the editor's choices, shared with the port
    # The editor's keys and endpoints, shared with the port; upstream usage goes to the ledger.
    router = Router(engine, settings, usage=engine.record_usage)
    http_servers: list[Any] = []

    async def start_http(port: int) -> str:
        if importlib.util.find_spec("sidecar.http.server") is None:
            raise RuntimeError("this build has no OpenAI port (sidecar.http.server is missing)")
        from sidecar.http.security import read_api_key
        from sidecar.http.server import serve_http

        api_key = read_api_key(settings.api_key, settings.api_key_file)
        http = await serve_http(
            engine,
            settings.http_host,
            port,
            api_key=api_key,
            roles=roles,
            router=router,
            allowed_hosts=settings.allowed_hosts,
            cors_origins=settings.cors_origins,
        )
        http_servers.append(http)
        return http.url

    try:
        server = build_server(engine, settings, roles, router)
        server.start_http = start_http  # for the editor's `httpPort` setting
        if http_port is not None:
            try:
                server.http_url = await start_http(http_port)
                log.warning("OpenAI API on %s/v1", server.http_url)
            except Exception as e:  # a busy port or a refused bind must not stop the editor's
                log.error("could not start the OpenAI port on %s: %s", http_port, e)
        return await stdio.serve(server, stdin, stdout)
    finally:
        for http in http_servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(http.stop(), CLOSE_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(router.close(), CLOSE_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(engine.close(), CLOSE_TIMEOUT_S)
        if usage is not None:
            usage.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    from sidecar.cli.serve_cmd import run_loop
    from sidecar.lsp.stdio import claim_stdout, quiet_pygls

    port = settings.http_port  # --http-port, the environment or the configuration file
    transport = claim_stdout()
    quiet_pygls()
    code = 1
    tracing.configure(settings)
    try:
        code = run_loop(serve(settings, port, sys.stdin.buffer, transport))
    except KeyboardInterrupt:
        code = 130
    finally:
        tracing.shutdown()
        sys.stderr.flush()
    # The stdin reader thread may be blocked in read(); it must not keep the process alive.
    os._exit(code)

"""`mlx-sidecar stdio`: JSON-RPC (LSP) on stdio for the editor; `--http-port` (or the editor's
`httpPort` setting) also serves the OpenAI API from the same engine. `--attach` instead bridges
stdio to a session on the machine's daemon (`mlx-sidecar daemon`), starting it if none runs.

The two edges are peers: this module makes the engine, the language server and, when asked,
the OpenAI port, and closes them; the language server only gets a `start_http` callable."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import BinaryIO

from sidecar import tracing
from sidecar.config import Settings

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stdio", help="JSON-RPC language server on stdio for the editor")
    p.add_argument("--http-port", type=int, default=None, help="also serve the OpenAI API here")
    p.add_argument(
        "--attach",
        action="store_true",
        help="bridge to the machine's daemon (started if none runs) instead of loading models here",
    )
    p.set_defaults(run=run)


async def serve(
    settings: Settings, http_port: int | None, stdin: BinaryIO, stdout: BinaryIO
) -> int:
    from sidecar.cli.compose import engine_and_router
    from sidecar.cli.http_port import OpenAIPort
    from sidecar.lsp import stdio
    from sidecar.lsp.server import build_server
    from sidecar.roles import Roles

    async with engine_and_router(settings) as (engine, router):
        roles = Roles.from_settings(settings)  # the editor's choices, shared with the port
        port = OpenAIPort(engine, settings, roles, router)
        try:
            server = build_server(engine, settings, roles, router)
            server.start_http = port.start  # for the editor's `httpPort` setting
            await port.start_logged(http_port)
            server.http_url = port.url
            return await stdio.serve(server, stdin, stdout)
        finally:
            await port.stop()


async def attach(
    settings: Settings, http_port: int | None, stdin: BinaryIO, stdout: BinaryIO
) -> int:
    from sidecar.daemon.bridge import attach as bridge
    from sidecar.daemon.paths import DaemonError

    try:
        return await bridge(settings, http_port, stdin, stdout)
    except DaemonError as e:
        print(f"mlx-sidecar: {e}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, settings: Settings) -> int:
    from sidecar.cli.serve_cmd import run_loop
    from sidecar.lsp.stdout import claim_stdout

    port = settings.http_port  # --http-port, the environment or the configuration file
    transport = claim_stdout()
    if not args.attach:  # the bridge imports neither pygls nor the engine, and traces nothing
        from sidecar.lsp.stdio import quiet_pygls

        quiet_pygls()
        tracing.configure(settings)
    code = 1
    main = attach if args.attach else serve
    try:
        code = run_loop(main(settings, port, sys.stdin.buffer, transport))
    except KeyboardInterrupt:
        code = 130
    finally:
        tracing.shutdown()
        sys.stderr.flush()
    # The stdin reader thread may be blocked in read(); it must not keep the process alive.
    os._exit(code)

"""`mlx-sidecar daemon`: the machine's one sidecar. Editor windows (the extension over the socket,
other clients through `stdio --attach`) each get their own language server session on one
engine, so each model is loaded once; the OpenAI port (`--http-port`) is opened here once.

It exits `daemon_grace_s` after its last client left; a second daemon started while one runs
(or starts) sees the lock taken and exits 0 at once."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from sidecar.config import Settings

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("daemon", help="one sidecar per machine: editor sessions on a Unix socket")
    p.add_argument("--http-port", type=int, default=None, help="also serve the OpenAI API here")
    p.add_argument(
        "--grace", type=float, default=None, help="seconds to stay after the last client left"
    )
    p.set_defaults(run=run)


async def serve(settings: Settings, http_port: int | None) -> int:
    from sidecar.daemon.lock import try_lock
    from sidecar.daemon.paths import daemon_paths, ensure_private_dir

    paths = daemon_paths(settings)
    ensure_private_dir(paths.dir)
    lock = try_lock(paths)
    if lock is None:  # before the engine's imports: a second daemon exits at once
        print(f"mlx-sidecar daemon: already running ({paths.socket})", file=sys.stderr)
        return 0

    from sidecar.cli.compose import engine_and_router
    from sidecar.cli.http_port import OpenAIPort
    from sidecar.daemon.server import Daemon
    from sidecar.lsp.server import build_server
    from sidecar.lsp.session import SidecarServer
    from sidecar.lsp.stdio import quiet_pygls
    from sidecar.roles import Roles

    quiet_pygls()
    try:
        async with engine_and_router(settings) as (engine, router):
            port = OpenAIPort(engine, settings, Roles.from_settings(settings), router)
            try:
                await port.start_logged(http_port)

                def make_session() -> SidecarServer:
                    # Each window its own roles, options and completion session; one engine.
                    session = build_server(engine, settings, Roles.from_settings(settings), router)
                    session.start_http = port.start
                    session.http_url = port.url
                    return session

                daemon = Daemon(paths, make_session, settings.daemon_grace_s)
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, daemon.stop)
                await daemon.listen()
                print(f"mlx-sidecar daemon: pid {os.getpid()} on {paths.socket}", file=sys.stderr)
                await daemon.done.wait()
                await daemon.close()
                return 0
            finally:
                await port.stop()
    finally:
        os.close(lock)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from sidecar import tracing
    from sidecar.cli.serve_cmd import run_loop
    from sidecar.daemon.paths import DaemonError

    tracing.configure(settings)
    try:  # --http-port and --grace are settings (sidecar/cli/main.py FLAG_SETTINGS)
        return run_loop(serve(settings, settings.http_port))
    except DaemonError as e:
        print(f"mlx-sidecar daemon: {e}", file=sys.stderr)
        return 2
    finally:
        tracing.shutdown()

"""`mlx-sidecar serve`: the OpenAI-compatible HTTP port only."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar import tracing
from sidecar.config import Settings

# The engine, FastAPI and the router load in the functions that use them: every command line
# builds this parser, and `stdio --attach` (which imports `run_loop` from here) must stay small.
if TYPE_CHECKING:
    from sidecar.engine.engine import Engine

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the OpenAI-compatible HTTP API")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8080; 0 picks a free one)")
    p.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY' (default: env MLX_SIDECAR_API_KEY); "
        "required to bind a non-loopback address. Visible in `ps`: prefer --api-key-file",
    )
    p.add_argument(
        "--api-key-file",
        type=Path,
        metavar="PATH",
        help="read the API key from the file's first line (default: env MLX_SIDECAR_API_KEY_FILE)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="allow browser requests from this origin (repeatable; CORS is off by default; "
        "setting cors_origins)",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="also accept this Host header (besides the bound host and localhost; "
        "setting allowed_hosts)",
    )
    p.set_defaults(run=run)


async def preload(engine: Engine, model_id: str) -> None:
    """Load the default chat model in the background so the first request is faster."""
    try:
        await engine.load(model_id)
    except Exception as e:  # the server still runs; requests will report the problem
        log.warning("could not preload %s: %s", model_id, e)


def api_key_of(settings: Settings) -> str | None:
    """Flag, environment or file (the settings); a key given directly wins over a key file."""
    from sidecar.http.security import read_api_key

    return read_api_key(settings.api_key, settings.api_key_file)


async def serve(settings: Settings, host: str, port: int, api_key: str | None) -> int:
    from sidecar.engine.engine import Engine
    from sidecar.usage.store import open_usage

    usage = open_usage(settings.usage_db, settings.prices, settings.usage)
    try:
        return await serve_engine(Engine(settings, usage=usage), settings, host, port, api_key)
    finally:
        if usage is not None:
            usage.close()


async def serve_engine(
    engine: Engine, settings: Settings, host: str, port: int, api_key: str | None
) -> int:
    from sidecar.http.server import serve_http
    from sidecar.upstreams.router import Router

    async with engine:
        # Upstream requests go to the same usage ledger as the local engine's.
        router = Router(engine, settings, usage=engine.record_usage)
        try:
            server = await serve_http(
                engine,
                host,
                port,
                api_key,
                allowed_hosts=settings.allowed_hosts,
                cors_origins=settings.cors_origins,
                router=router,
            )
        except OSError as e:
            print(f"error: cannot serve on {host}:{port}: {e}", file=sys.stderr)
            await router.close()
            return 1
        loading = asyncio.create_task(preload(engine, settings.chat_model))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(server.stop()))
        print(f"mlx-sidecar: OpenAI API at {server.url}/v1", file=sys.stderr, flush=True)
        await server.wait()
        loading.cancel()
        await router.close()
    return 0


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from sidecar.http.security import InsecureBindError, check_bind

    host = settings.http_host
    port = settings.http_port if settings.http_port is not None else 8080
    try:
        api_key = api_key_of(settings)
        check_bind(host, api_key)
    except (InsecureBindError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tracing.configure(settings)
    try:
        return run_loop(serve(settings, host, port, api_key))
    finally:
        tracing.shutdown()

"""Start uvicorn on the running asyncio loop, beside whatever else the process serves (the JSON-RPC
server in `stdio --http-port`). The socket is bound here so that a busy port is an ordinary
OSError for the caller, not uvicorn's sys.exit; uvicorn installs no signal handlers and writes
nothing to stdout (its loggers go to the root logger, which logs to stderr)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator, Iterable
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from sidecar.engine.engine import Engine
from sidecar.http.app import create_app
from sidecar.http.security import MAX_BODY_BYTES, check_bind
from sidecar.http.timeouts import header_timed
from sidecar.roles import Roles
from sidecar.upstreams.router import Router

log = logging.getLogger(__name__)


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the host process decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class HttpServer:
    server: EmbeddedServer
    task: asyncio.Task[None]
    host: str
    port: int
    engine: Engine
    app: FastAPI

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop accepting, close open connections (streams cancel their requests), return.
        A second call while the first waits closes at once (e.g. Ctrl-C twice)."""
        if self.server.should_exit:
            self.server.force_exit = True
        self.server.should_exit = True
        for request_id in list(self.app.state.generating):  # streams end with an error event
            self.engine.cancel(request_id)
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def wait(self) -> None:
        await asyncio.shield(self.task)


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def serve_http(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 8080,
    api_key: str | None = None,
    *,
    allowed_hosts: Iterable[str] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
    cors_origins: Iterable[str] = (),
    header_timeout_s: float | None = None,
    body_timeout_s: float | None = None,
    max_connections: int | None = None,
    roles: Roles | None = None,
    router: Router | None = None,
) -> HttpServer:
    """Serve the OpenAI API for `engine` on host:port (port 0 picks a free one) until `stop()`.
    Timeouts and the connection cap default to the engine's settings (`http_*`).

    Raises InsecureBindError (a ValueError) for a non-loopback host without an API key and
    OSError when the address cannot be bound."""
    check_bind(host, api_key)
    settings = engine.settings
    app = create_app(
        engine,
        bind_host=host,
        api_key=api_key,
        allowed_hosts=allowed_hosts,
        max_body_bytes=max_body_bytes,
        cors_origins=cors_origins,
        body_timeout_s=body_timeout_s or settings.http_body_timeout_s,
        roles=roles,
        router=router,
    )
    sock = bind_socket(host, port)
    config = uvicorn.Config(
        app,
        http=header_timed(header_timeout_s or settings.http_header_timeout_s),
        # uvicorn's hint says int, but it hands the value to loop.call_later: fractions work.
        timeout_keep_alive=settings.http_keep_alive_s,  # type: ignore[arg-type]
        # Connections plus running requests; beyond it uvicorn answers 503 at once, so a
        # flood of idle sockets cannot use up the process's file descriptors.
        limit_concurrency=max_connections or settings.http_max_connections,
        log_config=None,
        access_log=False,
        lifespan="off",
        ws="none",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=3,
    )
    server = EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="http-server")
    while not server.started:
        if task.done():
            sock.close()
            task.result()
            raise OSError(f"the HTTP server on {host}:{port} stopped during startup")
        await asyncio.sleep(0.01)
    bound_port = sock.getsockname()[1]
    log.info("OpenAI API on http://%s:%d/v1", host, bound_port)
    return HttpServer(server, task, host, bound_port, engine, app)

"""The process's one OpenAI port, opened on first request (the command line's `--http-port`, or an
editor's `httpPort` option) and shared after that: the daemon serves every window from it, so a
second window asking for a port gets the URL of the open one, not a port of its own."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
from typing import Any

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.roles import Roles

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 5.0


class OpenAIPort:
    def __init__(self, engine: Engine, settings: Settings, roles: Roles, router: Any) -> None:
        self.engine = engine
        self.settings = settings
        self.roles = roles
        self.router = router  # sidecar.upstreams.router.Router: upstream models on the port too
        self.http: Any = None
        self._lock = asyncio.Lock()

    @property
    def url(self) -> str | None:
        return self.http.url if self.http is not None else None

    async def start(self, port: int) -> str:
        async with self._lock:
            if self.http is not None:
                if port not in (0, self.http.port):
                    log.warning("port %d not opened: the OpenAI API is on %s", port, self.url)
                return str(self.http.url)
            if importlib.util.find_spec("sidecar.http.server") is None:
                raise RuntimeError("this build has no OpenAI port (sidecar.http.server is missing)")
            from sidecar.http.security import read_api_key
            from sidecar.http.server import serve_http

            api_key = read_api_key(self.settings.api_key, self.settings.api_key_file)
            self.http = await serve_http(
                self.engine,
                self.settings.http_host,
                port,
                api_key=api_key,
                roles=self.roles,
                router=self.router,
                allowed_hosts=self.settings.allowed_hosts,
                cors_origins=self.settings.cors_origins,
            )
            return str(self.http.url)

    async def start_logged(self, port: int | None) -> None:
        """Open `port` from the command line; a busy port is logged, not fatal."""
        if port is None:
            return
        try:
            log.warning("OpenAI API on %s/v1", await self.start(port))
        except Exception as e:  # a busy port or a refused bind must not stop the editor's
            log.error("could not start the OpenAI port on %s: %s", port, e)

    async def stop(self) -> None:
        if self.http is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.http.stop(), CLOSE_TIMEOUT_S)

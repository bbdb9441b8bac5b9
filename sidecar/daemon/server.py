"""The daemon's socket: each authenticated connection is a lease and gets its own language server
session (documents, options, completion cache, chat streams) on the one shared engine. When the
last lease ends the daemon waits `grace_s`, then stops listening and returns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

from sidecar.daemon import auth
from sidecar.daemon.paths import DaemonPaths, write_private
from sidecar.lsp.session import SidecarServer
from sidecar.lsp.streams import serve_connection

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 5.0


class Daemon:
    def __init__(
        self, paths: DaemonPaths, make_session: Callable[[], SidecarServer], grace_s: float
    ) -> None:
        self.paths = paths
        self.make_session = make_session
        self.grace_s = grace_s
        self.leases = 0
        self.sessions: list[SidecarServer] = []
        self.sessions_served = 0
        self.done = asyncio.Event()
        self._grace: asyncio.TimerHandle | None = None
        self._server: asyncio.Server | None = None
        self._token = ""
        self._socket_inode: int | None = None

    async def listen(self) -> None:
        """Bind the socket (the caller holds the lock, so a socket file left here is stale)."""
        self._token = auth.new_token(self.paths)
        with contextlib.suppress(FileNotFoundError):
            self.paths.socket.unlink()  # stale: its daemon no longer holds the lock
        old_umask = os.umask(0o177)  # the socket is 0600 from the start
        try:
            self._server = await asyncio.start_unix_server(
                self._connection, path=str(self.paths.socket)
            )
        finally:
            os.umask(old_umask)
        self._socket_inode = self.paths.socket.stat().st_ino
        write_private(self.paths.pid, f"{os.getpid()}\n")
        self._arm_grace()  # the client that started us may never come

    def stop(self) -> None:
        self.done.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._remove_own_files()

    def _remove_own_files(self) -> None:
        """Remove the socket and pid file if they are still ours (not a successor's)."""
        with contextlib.suppress(FileNotFoundError):
            if self.paths.socket.stat().st_ino == self._socket_inode:
                self.paths.socket.unlink()
        with contextlib.suppress(FileNotFoundError, ValueError):
            if int(self.paths.pid.read_text()) == os.getpid():
                self.paths.pid.unlink()

    def _arm_grace(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
        self._grace = asyncio.get_running_loop().call_later(self.grace_s, self._expire)

    def _expire(self) -> None:
        if self.leases == 0:
            log.warning("no client for %.1f s: the daemon exits", self.grace_s)
            self.done.set()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.done.is_set() or not await auth.accept(reader, writer, self._token):
                return
            await self._lease(reader, writer)
        except ConnectionError as e:
            log.info("a client's connection broke: %r", e)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT_S)

    async def _lease(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.leases += 1
        self.sessions_served += 1
        if self._grace is not None:
            self._grace.cancel()
        log.info("client attached (%d now)", self.leases)
        session = self.make_session()
        session.peers = lambda: list(self.sessions)
        self.sessions.append(session)
        try:
            await serve_connection(session, reader, writer)
        finally:
            self.sessions.remove(session)
            self.leases -= 1
            log.info("client left (%d now)", self.leases)
            if self.leases == 0:
                self._arm_grace()

"""The handshake before a connection carries JSON-RPC: the client sends the token and a newline,
the daemon answers `ok` or `error: <why>` (and closes). One line each way, so a client in any
language (the extension's `net.connect`, `stdio --attach`) does it in a few lines."""

from __future__ import annotations

import asyncio
import hmac
import secrets

from sidecar.daemon.paths import DaemonError, DaemonPaths, write_private

TOKEN_TIMEOUT_S = 5.0
MAX_LINE = 256
OK = b"ok\n"


class AuthError(DaemonError):
    """The daemon refused our token."""


def new_token(paths: DaemonPaths) -> str:
    token = secrets.token_hex(32)
    write_private(paths.token, token + "\n")
    return token


def read_token(paths: DaemonPaths) -> str:
    try:
        return paths.token.read_text().strip()
    except FileNotFoundError:
        return ""


async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str) -> bool:
    """Daemon side: read the client's token line and answer it; True when it matches."""
    try:
        line = await asyncio.wait_for(reader.readuntil(b"\n"), TOKEN_TIMEOUT_S)
    except TimeoutError:
        reason = "no token within 5 s"
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        reason = "no token line"
    else:
        sent = line.strip()[:MAX_LINE]
        if hmac.compare_digest(sent, token.encode()):
            writer.write(OK)
            return True
        reason = "wrong token" if sent else "missing token"
    writer.write(f"error: {reason} (read it from the daemon's token file)\n".encode())
    return False


async def present(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str) -> None:
    """Client side: send the token; raise AuthError with the daemon's reason if refused."""
    writer.write(token.encode() + b"\n")
    await writer.drain()
    try:
        line = await asyncio.wait_for(reader.readline(), TOKEN_TIMEOUT_S * 2)
    except TimeoutError as e:
        raise AuthError("the daemon did not answer the token") from e
    if line != OK:
        reason = line.decode(errors="replace").strip() or "connection closed"
        raise AuthError(f"the daemon refused this client: {reason}")

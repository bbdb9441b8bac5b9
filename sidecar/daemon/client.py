"""Reaching the daemon: connect and present the token, starting the daemon (detached) when none
answers. Used by `stdio --attach`; the extension does the same in TypeScript (src/daemon.ts)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time

from sidecar.config import Settings
from sidecar.daemon import auth
from sidecar.daemon.lock import holder_running
from sidecar.daemon.paths import (
    DaemonError,
    DaemonPaths,
    daemon_paths,
    ensure_private_dir,
    rotate_log,
)

log = logging.getLogger(__name__)
POLL_S = 0.05
RESPAWN_S = 3.0  # a daemon that was exiting when we spawned ours makes ours exit too: try again

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(paths: DaemonPaths) -> Streams:
    """An authenticated connection; FileNotFoundError / ConnectionRefusedError if none runs."""
    reader, writer = await asyncio.open_unix_connection(str(paths.socket))
    try:
        await auth.present(reader, writer, auth.read_token(paths))
    except BaseException:
        writer.close()
        raise
    return reader, writer


def daemon_command(settings: Settings, http_port: int | None) -> list[str]:
    argv = [sys.executable, "-m", "sidecar", "--models-dir", str(settings.models_dir)]
    argv += ["--log-level", logging.getLevelName(logging.getLogger().getEffectiveLevel())]
    argv.append("daemon")
    if http_port is not None:
        argv += ["--http-port", str(http_port)]
    return argv


def spawn_daemon(settings: Settings, paths: DaemonPaths, http_port: int | None) -> None:
    """Start `mlx-sidecar daemon` in its own session, its output in the runtime dir's log."""
    ensure_private_dir(paths.dir)
    rotate_log(paths.log)
    env = dict(os.environ)
    if settings.daemon_runtime_dir is not None:
        env["MLX_SIDECAR_DAEMON_RUNTIME_DIR"] = str(settings.daemon_runtime_dir)
    fd = os.open(paths.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "ab") as out:
        subprocess.Popen(
            daemon_command(settings, http_port),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,  # it outlives the client that started it
            close_fds=True,
        )


async def connect_or_start(settings: Settings, http_port: int | None = None) -> Streams:
    paths = daemon_paths(settings)
    ensure_private_dir(paths.dir)
    deadline = time.monotonic() + settings.daemon_start_timeout_s
    spawned_at: float | None = None
    while True:
        try:
            return await connect(paths)
        except (FileNotFoundError, ConnectionRefusedError):
            pass  # none runs (or it is starting, or exiting)
        except PermissionError as e:
            raise DaemonError(f"cannot reach the daemon's socket {paths.socket}: {e}") from e
        now = time.monotonic()
        if now > deadline:
            raise DaemonError(
                f"no daemon answered on {paths.socket} within "
                f"{settings.daemon_start_timeout_s:.0f} s; see {paths.log}"
            )
        due = spawned_at is None or now - spawned_at > RESPAWN_S
        if due and not holder_running(paths):  # a daemon that holds the lock is still starting
            log.info("starting the daemon (%s)", paths.socket)
            spawn_daemon(settings, paths, http_port)
            spawned_at = now
        await asyncio.sleep(POLL_S)

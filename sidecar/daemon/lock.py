"""One daemon per runtime directory: it holds an exclusive `flock` on the lock file for its whole
life. The kernel drops the lock when the process dies (even by `kill -9`), so a socket file
whose lock is free is stale by definition and the new holder replaces it; two daemons started
at the same instant race for the lock and the loser exits."""

from __future__ import annotations

import fcntl
import os

from sidecar.daemon.paths import DaemonPaths


def try_lock(paths: DaemonPaths) -> int | None:
    """The locked file descriptor (keep it open), or None when another daemon holds it."""
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def holder_running(paths: DaemonPaths) -> bool:
    """Whether a daemon holds the lock now (without taking it for long)."""
    fd = try_lock(paths)
    if fd is None:
        return True
    os.close(fd)
    return False

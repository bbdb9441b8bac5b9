"""Where the machine's one sidecar lives: a private runtime directory holding its socket, the token
clients present, the lock that makes it one, its pid and its log.

Why the directory's mode plus a token is enough: the socket is in a directory that only its user
can enter (0700, checked to be owned by us: on Linux and macOS a Unix socket cannot be reached
through a directory the caller cannot search), so other users never reach it. The token (0600,
new at each daemon start) is read from the same directory and must be sent first on every
connection: a process that can connect but not read our files (another user through a
misconfigured directory, a sandbox that shares the socket but not the file) is refused, and a
client never talks to a stale or foreign listener by mistake. Processes of the same user can
read the token: they could equally start the sidecar themselves, as with any stdio server.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sidecar.config import Settings, cache_home

DIR_NAME = "mlx-sidecar"


class DaemonError(Exception):
    """The daemon cannot be reached or started; the message says why, for the user."""


@dataclass(frozen=True)
class DaemonPaths:
    dir: Path

    @property
    def socket(self) -> Path:
        return self.dir / "sidecar.sock"

    @property
    def token(self) -> Path:
        return self.dir / "token"

    @property
    def lock(self) -> Path:
        return self.dir / "daemon.lock"

    @property
    def pid(self) -> Path:
        return self.dir / "daemon.pid"

    @property
    def log(self) -> Path:
        return self.dir / "daemon.log"


def runtime_dir(settings: Settings) -> Path:
    if settings.daemon_runtime_dir is not None:
        return settings.daemon_runtime_dir
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / DIR_NAME
    return cache_home() / DIR_NAME / "run"


def daemon_paths(settings: Settings) -> DaemonPaths:
    return DaemonPaths(runtime_dir(settings))


def ensure_private_dir(path: Path) -> None:
    """Create `path` as 0700, or check an existing one is ours and tighten its mode."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise DaemonError(f"{path} is not a directory")
    if st.st_uid != os.getuid():
        raise DaemonError(f"{path} belongs to another user (uid {st.st_uid}); refusing to use it")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


LOG_KEEP_BYTES = 1 << 20


def rotate_log(path: Path) -> None:
    """Keep the daemon's log small: past 1 MiB it becomes `<log>.1` (the one before is dropped)."""
    try:
        if path.stat().st_size > LOG_KEEP_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (0600) atomically: a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)

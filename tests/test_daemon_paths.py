"""The daemon's runtime directory is private: created 0700, an existing one tightened to 0700,
one owned by another user refused; files written there are 0600 and replaced atomically; the
log rotates past 1 MiB. No subprocess, no model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sidecar.config import Settings
from sidecar.daemon import paths
from sidecar.daemon.lock import holder_running, try_lock
from sidecar.daemon.paths import DaemonError, DaemonPaths, ensure_private_dir, write_private


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_runtime_dir_is_created_private_and_tightened(tmp_path: Path) -> None:
    fresh = tmp_path / "a" / "run"
    ensure_private_dir(fresh)
    assert mode(fresh) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    ensure_private_dir(loose)
    assert mode(loose) == 0o700


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a directory another user owns")
def test_a_runtime_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(DaemonError, match="another user"):
        ensure_private_dir(theirs)


def test_private_files_are_0600_and_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "token"
    write_private(target, "one\n")
    write_private(target, "two\n")
    assert target.read_text() == "two\n"
    assert mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["token"]  # no temporary file left


def test_the_runtime_dir_follows_the_setting_then_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert paths.runtime_dir(Settings(daemon_runtime_dir=tmp_path / "x")) == tmp_path / "x"
    assert paths.runtime_dir(Settings()) == tmp_path / "mlx-sidecar"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert paths.runtime_dir(Settings()) == Path.home() / ".cache" / "mlx-sidecar" / "run"


def test_one_lock_holder_at_a_time(tmp_path: Path) -> None:
    where = DaemonPaths(tmp_path)
    fd = try_lock(where)
    assert fd is not None
    try:
        assert try_lock(where) is None  # flock conflicts between open file descriptions
        assert holder_running(where)
    finally:
        os.close(fd)
    assert not holder_running(where)


def test_the_log_rotates_past_a_mebibyte(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    log.write_bytes(b"x" * 100)
    paths.rotate_log(log)
    assert log.exists()
    log.write_bytes(b"x" * (paths.LOG_KEEP_BYTES + 1))
    paths.rotate_log(log)
    assert not log.exists() and (tmp_path / "daemon.log.1").exists()

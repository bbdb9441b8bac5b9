"""Installing the default models: two installs into one models dir never run at once (the
second found a half-written GGUF and crashed with a bus error when they did)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from filelock import FileLock

from sidecar.models import defaults


def test_a_second_install_waits_for_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    entered = threading.Event()

    def fake_install(models_dir: Path, dtype: str | None, progress: object) -> list[Path]:
        calls.append("install")
        entered.set()
        return []

    monkeypatch.setattr(defaults, "_install", fake_install)
    held = FileLock(tmp_path / ".setup-defaults.lock")
    held.acquire()  # another process's install is running
    worker = threading.Thread(target=defaults.install_defaults, args=(tmp_path,))
    worker.start()
    assert not entered.wait(0.5)  # it waits while the lock is held
    assert calls == []
    held.release()
    assert entered.wait(30)
    worker.join(30)
    assert calls == ["install"]

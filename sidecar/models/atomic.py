"""Directories that appear whole or not at all: write into a staging directory on the same file
system, then rename it into place. The store lists whatever directory exists, so a model must
never be visible half-written (a crash, a failed import, a cancelled download)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def publish_dir(staging: Path, target: Path, *, replace: bool = False) -> Path:
    """Rename the finished `staging` directory to `target` (removing an old `target` first when
    `replace`). Both must be on one file system for the rename to be atomic: keep staging
    directories inside the models directory, never in /tmp."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if replace and target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


@contextlib.contextmanager
def staged_dir(target: Path, *, replace: bool = False) -> Iterator[Path]:
    """A fresh hidden directory beside `target` to fill; renamed to `target` when the block
    ends, removed when it raises (cancellation included)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".staging-{target.name}-", dir=target.parent))
    try:
        yield tmp
        publish_dir(tmp, target, replace=replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

"""The `mlx-sidecar` command line as a subprocess (`python -m sidecar`, which inherits
PYTHONPATH, so a worktree's package is the one run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def cli(models_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "--models-dir", str(models_dir), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )

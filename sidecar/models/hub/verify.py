"""Check that a downloaded model loads before the store lists it: a lazy load by kind in a child
process, so the download thread never touches MLX and a broken model cannot take the engine
down."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from sidecar.errors import HubError
from sidecar.mlx_cleanup import clear_thread_streams
from sidecar.models.kinds import ModelKind

VERIFY_TIMEOUT_S = 600


def verify_loads(path: Path, kind: ModelKind, timeout_s: float = VERIFY_TIMEOUT_S) -> None:
    """Load the model lazily (config, weights' names and shapes, tokenizer) in a child process,
    so this thread never touches MLX and a broken model cannot take the engine down."""
    code = "import sys; from sidecar.models.hub.verify import _verify_here; _verify_here(sys.argv[1], sys.argv[2])"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(path), kind],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        raise HubError(f"loading the downloaded model took over {timeout_s:.0f} s") from e
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit code {done.returncode}"
        raise HubError(f"the downloaded model does not load as a {kind} model: {reason}")


def _verify_here(path: str, kind: str) -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)  # the check yields the CPU to the engine's running batches
    import sidecar  # noqa: F401  (OpenBLAS before mlx)

    if kind == "text":
        from mlx_lm import load

        load(path, lazy=True)
    elif kind == "embedding":
        import mlx_embeddings

        mlx_embeddings.load(path, lazy=True)
    else:
        from mlx_vlm import load as load_vlm

        load_vlm(path, lazy=True)
    # or the child may abort at exit and fail a good download (see clear_thread_streams)
    clear_thread_streams()

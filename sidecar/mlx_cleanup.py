"""MLX's end-of-thread cleanup, for every thread that ran MLX work (the engine's worker, the main
thread of a command, a pool thread that imported a model, a child process that checked one)."""

from __future__ import annotations

import sys


def clear_thread_streams() -> None:
    """Destroy the MLX streams this thread created. MLX asks for this at the end of every thread
    that ran MLX work, the main thread included: left to thread/interpreter teardown, the cleanup
    can abort the process ("terminate called without an active exception")."""
    if "mlx.core" not in sys.modules:
        return
    import mlx.core as mx

    clear = getattr(mx, "clear_streams", None)
    if clear is not None:
        clear()

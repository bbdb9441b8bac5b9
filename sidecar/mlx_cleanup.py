"""MLX's end-of-thread cleanup, for every thread that ran MLX work (the engine's worker, the main
thread of a command, a pool thread that imported a model, a child process that checked one)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


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


async def to_thread_clearing(fn: Callable[..., T], *args: Any) -> T:
    """`asyncio.to_thread` for MLX work: the pool thread destroys its MLX streams once `fn`
    returns (left to the interpreter's exit, they abort the process after the work is done)."""

    def run() -> T:
        try:
            return fn(*args)
        finally:
            clear_thread_streams()

    return await asyncio.to_thread(run)


def release_memory() -> None:
    """Give freed memory back to the OS: MLX's buffer cache, then glibc's heap. MLX frees a
    model's buffers, but glibc keeps most of them in its heap (its mmap threshold rises past
    the first large free), so the process's RSS stayed ~450 MiB up after unloading SmolLM2
    (measured); `malloc_trim(0)` returns them. No-op off glibc (macOS returns pages itself)."""
    import gc

    import mlx.core as mx

    gc.collect()
    mx.clear_cache()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _malloc_trim() -> Any:
    global _TRIM
    if _TRIM is False:
        import ctypes
        import ctypes.util

        _TRIM = None
        if sys.platform.startswith("linux"):
            try:
                _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            except (OSError, AttributeError):  # musl has no malloc_trim
                _TRIM = None
    return _TRIM


_TRIM: Any = False  # not looked up yet

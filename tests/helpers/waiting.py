"""Waiting for a condition instead of sleeping a fixed time: a fixed sleep is either too short on
a loaded machine (the test flakes) or longer than needed everywhere (the suite crawls). `until` is
the one poll of the suite: every wait is bounded and says what it waited for when it fails."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sidecar.engine.engine import Engine


async def until(
    condition: Callable[[], object | Awaitable[object]],
    timeout: float = 30.0,
    every: float = 0.02,
    what: str = "condition",
) -> None:
    """Return as soon as `condition()` is truthy (awaited when it returns an awaitable); fail
    the test, naming `what`, if it is not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(every)


def reset_batch_peaks(engine: Engine) -> None:
    """Zero every loaded runner's largest-batch counter, so a test reads the batches it made
    itself: the engine is shared by the session, and earlier tests moved those counters."""
    for loaded in engine.pool.models.values():
        runner: Any = loaded.runner
        if runner is not None and hasattr(runner, "max_batch_seen"):
            runner.max_batch_seen = 0

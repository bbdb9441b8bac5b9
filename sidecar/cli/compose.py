"""What `stdio` and `daemon` both run on: the usage ledger, the engine that reports to it and the
upstream router, opened together and closed in reverse order, each close bounded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from sidecar.config import Settings

if TYPE_CHECKING:
    from sidecar.engine.engine import Engine
    from sidecar.upstreams.router import Router

CLOSE_TIMEOUT_S = 5.0


@contextlib.asynccontextmanager
async def engine_and_router(settings: Settings) -> AsyncIterator[tuple[Engine, Router]]:
    from sidecar.engine.engine import Engine
    from sidecar.upstreams.router import Router
    from sidecar.usage.store import open_usage

    usage = open_usage(settings.usage_db, settings.prices, settings.usage)
    engine = Engine(settings, usage=usage)
    # One router for every session and the port; upstream usage goes to the engine's ledger.
    router = Router(engine, settings, usage=engine.record_usage)
    try:
        await engine.start()
        yield engine, router
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(router.close(), CLOSE_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(engine.close(), CLOSE_TIMEOUT_S)
        if usage is not None:
            usage.close()

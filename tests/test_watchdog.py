"""The worker watchdog: a worker call or step that has not returned within `watchdog_step_s`, or
a dead worker thread, marks the engine unhealthy (`/health` 503, `healthy: false` with a reason
in the status the editor polls), and a step that returns makes it healthy again."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.engine.worker import Worker
from sidecar.http.server import HttpServer, serve_http
from tests.helpers.http_client import request
from tests.helpers.waiting import until

WATCHDOG_S = 0.5


@pytest.fixture(scope="module")
async def watched(settings: Settings) -> AsyncIterator[Engine]:
    """An engine (no model needed) whose watchdog fires after WATCHDOG_S."""
    async with Engine(settings.model_copy(update={"watchdog_step_s": WATCHDOG_S})) as engine:
        yield engine


@pytest.fixture(scope="module")
async def port(watched: Engine) -> AsyncIterator[HttpServer]:
    server = await serve_http(watched, "127.0.0.1", 0)
    yield server
    await server.stop()


async def health(port: HttpServer) -> tuple[int, dict[str, Any]]:
    status, _, body = await asyncio.to_thread(request, port.port, "GET", "/health")
    return status, orjson.loads(body)


async def test_a_stuck_worker_step_turns_health_to_503_and_back(
    watched: Engine, port: HttpServer
) -> None:
    status, body = await health(port)
    assert status == 200 and body["status"] == "ok" and body["healthy"] is True
    assert body["health_reason"] is None
    release = threading.Event()
    stuck = watched.worker.call(lambda: release.wait(60))  # blocks the MLX worker thread
    try:
        answers: list[tuple[int, dict[str, Any]]] = []

        async def unhealthy() -> bool:
            answers.append(await health(port))
            return answers[-1][0] == 503

        await until(unhealthy, timeout=30, every=0.1)
        body = answers[-1][1]
        assert body["status"] == "unhealthy" and body["healthy"] is False
        assert "has not returned" in body["health_reason"]
        assert f"watchdog_step_s {WATCHDOG_S:g}" in body["health_reason"]
        status_now = watched.status()  # what `mlx/status` carries
        assert not status_now.healthy and status_now.health_reason
        _, _, metrics = await asyncio.to_thread(request, port.port, "GET", "/metrics")
        assert "\nmlx_sidecar_healthy 0\n" in metrics.decode()
    finally:
        release.set()
    assert await asyncio.wrap_future(stuck) is True
    status, body = await health(port)
    assert status == 200 and body["healthy"] is True and body["health_reason"] is None
    _, _, metrics = await asyncio.to_thread(request, port.port, "GET", "/metrics")
    assert "\nmlx_sidecar_healthy 1\n" in metrics.decode()


async def test_a_healthy_engine_keeps_answering_while_a_short_call_runs(
    watched: Engine, port: HttpServer
) -> None:
    """A call shorter than the watchdog's limit never shows as unhealthy."""
    release = threading.Event()
    call = watched.worker.call(lambda: release.wait(60))
    status, body = await health(port)
    release.set()
    await asyncio.wrap_future(call)
    assert status == 200 and body["healthy"] is True


async def test_a_dead_worker_thread_is_unhealthy_and_refuses_work() -> None:
    """The worker's idle hook raising (a bug) ends its thread: the watchdog says so, and work
    handed to it fails at once instead of waiting forever."""

    def broken_idle() -> None:
        raise RuntimeError("idle hook broke")

    worker = Worker(lambda: [], broken_idle, watchdog_step_s=WATCHDOG_S)
    worker.start()
    await until(lambda: worker.health_reason() is not None)
    reason = worker.health_reason() or ""
    assert "died" in reason and "idle hook broke" in reason
    with pytest.raises(RuntimeError, match="died"):
        await asyncio.wrap_future(worker.call(lambda: 1))

"""One upstream: an httpx.AsyncClient with its timeouts, a concurrency limit, its breaker, and
requests that retry where that is safe (a connection refused, or 429/502/503 before any byte of
the reply) with doubling backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from sidecar.upstreams.breaker import Breaker
from sidecar.upstreams.errors import UpstreamError, answered
from sidecar.upstreams.keys import Keys
from sidecar.upstreams.settings import UpstreamSettings

log = logging.getLogger(__name__)
RETRY_STATUS = frozenset({429, 502, 503})


class Upstream:
    def __init__(self, name: str, settings: UpstreamSettings, keys: Keys) -> None:
        self.name = name
        self.settings = settings
        self.keys = keys
        self.breaker = Breaker(settings.breaker_failures, settings.breaker_open_s)
        self.slots = asyncio.Semaphore(settings.max_concurrency)
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.read_timeout_s, connect=settings.connect_timeout_s, pool=None
            ),
            limits=httpx.Limits(max_connections=settings.max_concurrency),
            trust_env=False,  # a cluster on the LAN is not reached through $HTTP_PROXY
        )
        self.in_flight = 0

    def __repr__(self) -> str:
        return f"Upstream({self.name!r}, {self.settings.base_url!r})"

    async def close(self) -> None:
        await self.client.aclose()

    def headers(self) -> dict[str, str]:
        key = self.keys.get(self.name, self.settings)
        headers = {"Accept": "application/json, text/event-stream"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key.get_secret_value()}"
        return headers

    def check_breaker(self) -> None:
        if not self.breaker.allow():
            raise UpstreamError(
                self.name,
                f"not called: it failed {self.breaker.consecutive} times in a row "
                f"(circuit open, next try in {self.breaker.retry_in_s():.0f} s)",
                http_status=503,
                code="upstream_circuit_open",
            )

    @contextlib.asynccontextmanager
    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """The upstream's 2xx reply to `method path`, its body not read yet (stream it with
        `aiter_lines`/`aread`); closed when the block ends, which closes the upstream request
        too (a client that leaves, a cancelled JSON-RPC request). Raises UpstreamError."""
        self.check_breaker()
        async with self.slots:
            response = await self._send(method, path, body)
            self.in_flight += 1
            try:
                yield response
            finally:
                self.in_flight -= 1
                await response.aclose()

    async def _send(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        url = f"{self.settings.base_url}/{path.lstrip('/')}"
        content = orjson.dumps(body) if body is not None else None
        headers = self.headers()
        if content is not None:
            headers["Content-Type"] = "application/json"
        delay = self.settings.retry_backoff_s
        for attempt in range(self.settings.retries + 1):
            last = attempt == self.settings.retries
            request = self.client.build_request(method, url, content=content, headers=headers)
            try:
                response = await self.client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                if not last:  # nothing reached the upstream: safe to send again
                    log.info("upstream %s: %s; retrying in %.2f s", self.name, kind(e), delay)
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                self.breaker.failure()
                raise UpstreamError(
                    self.name, f"cannot connect to {self.settings.base_url}: {kind(e)}", 503
                ) from None
            except httpx.TimeoutException as e:
                self.breaker.failure()
                raise UpstreamError(self.name, f"timed out: {kind(e)}", 504) from None
            except httpx.HTTPError as e:  # the connection broke before a reply
                self.breaker.failure()
                raise UpstreamError(self.name, f"no reply: {kind(e)}", 502) from None
            if response.status_code < 400:
                self.breaker.success()
                return response
            raw = await response.aread()
            await response.aclose()
            if response.status_code in RETRY_STATUS and not last:
                wait = retry_after(response) or delay
                log.info(
                    "upstream %s: %d; retrying in %.2f s", self.name, response.status_code, wait
                )
                await asyncio.sleep(wait)
                delay *= 2
                continue
            if response.status_code >= 500:
                self.breaker.failure()
            else:
                self.breaker.success()  # it is up; the request was wrong
            raise answered(self.name, response.status_code, raw)
        raise AssertionError("unreachable")

    async def get_json(self, path: str) -> Any:
        async with self.request("GET", path) as response:
            return orjson.loads(await response.aread())


def kind(e: Exception) -> str:
    """An httpx error in words, without its request (whose headers hold the key)."""
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return min(float(value), 10.0) if value else None
    except ValueError:
        return None

"""One upstream: an httpx.AsyncClient with its timeouts, a concurrency limit, its breaker, and
requests that retry where that is safe (a connection refused, or 429/502/503 before any byte of
the reply) with doubling backoff.

What comes back is bounded (`Reply`): the wait for the reply's headers, the whole call, one SSE
line and one body; a connection that breaks mid-reply is an UpstreamError naming the upstream,
and every error message from it has the key redacted (sidecar/upstreams/redact.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from sidecar.errors import UpstreamError
from sidecar.upstreams.breaker import Breaker
from sidecar.upstreams.errors import answered
from sidecar.upstreams.keys import Keys
from sidecar.upstreams.redact import Redactor
from sidecar.upstreams.settings import UpstreamSettings

log = logging.getLogger(__name__)
RETRY_STATUS = frozenset({429, 502, 503})
MAX_ERROR_BODY = 64 << 10  # of an error reply, only the message is kept


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
        self.redact = Redactor()  # every key sent to it, masked in whatever it sends back

    def __repr__(self) -> str:
        return f"Upstream({self.name!r}, {self.settings.base_url!r})"

    async def close(self) -> None:
        await self.client.aclose()

    def headers(self) -> dict[str, str]:
        key = self.keys.get(self.name, self.settings)
        # identity: the body limits count what the upstream sent, not what it inflates to
        headers = {"Accept": "application/json, text/event-stream", "Accept-Encoding": "identity"}
        if key is not None:
            secret = key.get_secret_value()
            self.redact.add(secret)
            headers["Authorization"] = f"Bearer {secret}"
        return headers

    def error(self, message: str, status: int = 502) -> UpstreamError:
        return UpstreamError(self.name, self.redact.text(message), status)

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
    ) -> AsyncIterator[Reply]:
        """The upstream's 2xx reply to `method path`, its body not read yet (read it with
        `Reply.read` or `Reply.lines`); closed when the block ends, which closes the upstream
        request too (a client that leaves, a cancelled JSON-RPC request). The whole call,
        body included, ends by `total_timeout_s`. Raises UpstreamError."""
        self.check_breaker()
        deadline = asyncio.get_running_loop().time() + self.settings.total_timeout_s
        async with self.slots:
            response = await self._send(method, path, body, deadline)
            self.in_flight += 1
            try:
                yield Reply(self, response, deadline)
            finally:
                self.in_flight -= 1
                await response.aclose()

    async def _send(
        self, method: str, path: str, body: dict[str, Any] | None, deadline: float
    ) -> httpx.Response:
        url = f"{self.settings.base_url}/{path.lstrip('/')}"
        content = orjson.dumps(body) if body is not None else None
        headers = self.headers()
        if content is not None:
            headers["Content-Type"] = "application/json"
        delay = self.settings.retry_backoff_s
        for attempt in range(self.settings.retries + 1):
            last = attempt == self.settings.retries
            request = self.client.build_request(method, url, content=content, headers=headers)
            loop = asyncio.get_running_loop()
            wait = min(self.settings.first_byte_timeout_s, deadline - loop.time())
            try:
                async with asyncio.timeout(max(wait, 0)):
                    response = await self.client.send(request, stream=True)
            except TimeoutError:
                self.breaker.failure()
                raise UpstreamError(
                    self.name, f"sent no reply within {wait:.0f} s (first_byte_timeout_s)", 504
                ) from None
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
            try:
                raw = await Reply(self, response, deadline).read(MAX_ERROR_BODY, truncate=True)
            finally:
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
            raise answered(self.name, response.status_code, raw, self.redact.text)
        raise AssertionError("unreachable")

    async def get_json(self, path: str) -> Any:
        async with self.request("GET", path) as reply:
            raw = await reply.read()
        try:
            return self.redact.json(orjson.loads(raw))
        except orjson.JSONDecodeError:
            raise self.error(f"sent a reply to {path} that is not JSON") from None


@dataclass
class Reply:
    """An upstream's reply whose body is read within the call's deadline and size limits."""

    upstream: Upstream
    response: httpx.Response
    deadline: float  # the event loop's clock

    @property
    def content_type(self) -> str:
        return self.response.headers.get("content-type", "").split(";")[0].strip().lower()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it comes; an UpstreamError when the call runs past its deadline or the
        connection breaks (a stall between bytes is httpx's read timeout)."""
        upstream = self.upstream
        loop = asyncio.get_running_loop()
        body = self.response.aiter_bytes()
        while True:
            remaining = self.deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    chunk = await anext(body)
            except StopAsyncIteration:
                return
            except TimeoutError:
                upstream.breaker.failure()
                total = upstream.settings.total_timeout_s
                message = f"did not finish within {total:g} s (total_timeout_s)"
                raise upstream.error(message, 504) from None
            except httpx.TimeoutException as e:
                upstream.breaker.failure()
                raise upstream.error(f"stalled mid-reply: {kind(e)}", 504) from None
            except httpx.HTTPError as e:
                upstream.breaker.failure()
                raise upstream.error(f"the connection broke mid-reply ({kind(e)})") from None
            yield chunk

    async def read(self, limit: int | None = None, truncate: bool = False) -> bytes:
        """The whole body, at most `limit` bytes (default `max_body_bytes`): past it, an
        UpstreamError, or with `truncate` the first `limit` bytes."""
        limit = limit or self.upstream.settings.max_body_bytes
        out = bytearray()
        async for chunk in self.chunks():
            out += chunk
            if len(out) > limit:
                if truncate:
                    return bytes(out[:limit])
                raise self.upstream.error(f"sent a reply over {limit} bytes (max_body_bytes)")
        return bytes(out)

    async def lines(self) -> AsyncIterator[str]:
        """The body's lines (SSE), each at most `max_line_bytes`. By hand: httpx's
        `aiter_lines` has no bound on a line, so a reply without newlines would grow forever."""
        limit = self.upstream.settings.max_line_bytes
        buffer = bytearray()
        async for chunk in self.chunks():
            buffer += chunk
            while (end := buffer.find(b"\n")) >= 0:
                if end > limit:
                    break
                line = bytes(buffer[:end]).rstrip(b"\r")
                del buffer[: end + 1]
                yield line.decode(errors="replace")
            if len(buffer) > limit:
                raise self.upstream.error(f"sent a line over {limit} bytes (max_line_bytes)")
        if buffer:
            yield bytes(buffer).rstrip(b"\r").decode(errors="replace")


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

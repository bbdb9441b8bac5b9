"""Time limits on what a client sends, so stalled connections cannot pile up until the port stops
answering (slowloris): headers must arrive within `header_timeout_s` of the connection opening
(or of the first byte of the next request on a kept-alive connection), a body within
`body_timeout_s` of its request starting. uvicorn itself bounds only idle keep-alive time.

A body that never comes is one INFO line, not tracebacks: a client going away is not a server
error."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from sidecar.http.errors import OpenAIError

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0


class BodyAbandoned(ClientDisconnect):
    """The client closed the connection before its body was complete."""


def header_timed(header_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing connections whose request headers do not come in time."""

    class HeaderTimedH11Protocol(H11Protocol):
        header_timer: asyncio.TimerHandle | None = None

        def between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def arm(self) -> None:
            if self.header_timer is None:
                self.header_timer = self.loop.call_later(header_timeout_s, self.headers_late)

        def disarm(self) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.arm()

        def data_received(self, data: bytes) -> None:
            if self.between_requests():  # these bytes start (or continue) the next headers
                self.arm()
            super().data_received(data)
            if not self.between_requests():
                self.disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self.disarm()
            super().connection_lost(exc)

        def headers_late(self) -> None:
            self.header_timer = None
            if self.between_requests() and not self.transport.is_closing():
                who = "{}:{} ".format(*self.client) if self.client else ""
                log.info("%sclosed: no request headers within %g s", who, header_timeout_s)
                self.transport.close()

    return HeaderTimedH11Protocol


def body_timeout_error(timeout_s: float) -> OpenAIError:
    return OpenAIError(
        408,
        f"the request body did not arrive within {timeout_s:g} s",
        code="request_timeout",
        headers={"Connection": "close"},  # the rest of the body may still trickle in
    )


class BodyDeadline:
    """ASGI middleware: the whole body within `timeout_s` (408), a client that leaves mid-body
    raises BodyAbandoned (logged once by `abandoned`)."""

    def __init__(self, app: ASGIApp, timeout_s: float = BODY_TIMEOUT_S) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        complete = False

        async def timed() -> Message:
            nonlocal complete
            if complete:  # after the body the app waits for a disconnect: no deadline then
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except TimeoutError:
                log.info(
                    "%s %s: body not received within %g s",
                    scope["method"],
                    scope["path"],
                    self.timeout_s,
                )
                raise body_timeout_error(self.timeout_s) from None
            if message["type"] == "http.disconnect":
                raise BodyAbandoned()
            complete = not message.get("more_body", False)
            return message

        await self.app(scope, timed, send)


async def abandoned(request: Request, exc: Exception) -> Response:
    """Exception handler: one INFO line; the response goes nowhere (the client is gone)."""
    client = getattr(request, "client", None)
    who = f"{client.host}:{client.port} " if client else ""
    log.info("%sleft before sending the whole body of %s %s", who, request.method, request.url.path)
    return Response(status_code=400)

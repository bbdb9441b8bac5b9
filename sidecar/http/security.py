"""What keeps a local model port local: loopback by default, a bearer key when asked for (and
required off loopback), Host-header checks against DNS rebinding, and a body size limit."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidecar.http.errors import OpenAIError

MAX_BODY_BYTES = 32 << 20  # images come inline as data: URLs
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
WILDCARD = {"0.0.0.0", "::", ""}


class InsecureBindError(ValueError):
    pass


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to expose models beyond this machine without a key."""
    if not is_loopback(host) and not api_key:
        raise InsecureBindError(
            f"refusing to serve on non-loopback address {host!r} without an API key: anyone who "
            "can reach it could use your models. Pass --api-key (or set MLX_SIDECAR_API_KEY), "
            "or bind 127.0.0.1."
        )


def host_name(header: str) -> str:
    """'example.com:8080' -> 'example.com', '[::1]:8080' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    name, _, port = header.rpartition(":")
    return name if name and port.isdigit() else header


def allowed_host_names(bind_host: str, extra: Iterable[str] = ()) -> set[str] | None:
    """Host names requests may carry; None allows any (wildcard binds need a key anyway)."""
    if bind_host in WILDCARD:
        return None
    return {*LOOPBACK_NAMES, bind_host.lower().strip("[]"), *(h.lower() for h in extra)}


class Guard:
    """ASGI middleware: Host check (421), bearer key (401), body size (413)."""

    def __init__(
        self,
        app: ASGIApp,
        api_key: str | None,
        allowed_hosts: set[str] | None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.allowed_hosts = allowed_hosts
        self.max_body_bytes = max_body_bytes

    def refuse(self, headers: Headers) -> OpenAIError | None:
        if self.allowed_hosts is not None:
            host = host_name(headers.get("host", ""))
            if host not in self.allowed_hosts:
                return OpenAIError(
                    421, f"host {host!r} is not served here", param=None, code="invalid_host"
                )
        if self.api_key:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), self.api_key.encode()
            ):
                return OpenAIError(
                    401,
                    "missing or wrong API key: send 'Authorization: Bearer <key>'",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return OpenAIError(400, "invalid Content-Length header")
            if int(length) > self.max_body_bytes:
                return self.too_large()
        return None

    def too_large(self) -> OpenAIError:
        return OpenAIError(
            413,
            f"request body is larger than {self.max_body_bytes} bytes",
            code="request_too_large",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        error = self.refuse(Headers(scope=scope))
        if error is not None:
            await error.response()(scope, receive, send)
            return
        received = 0
        limit = self.max_body_bytes

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # chunked bodies have no Content-Length to check first
                    raise HTTPException(413, f"request body is larger than {limit} bytes")
            return message

        await self.app(scope, counted, send)

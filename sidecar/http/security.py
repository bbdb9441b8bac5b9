"""What keeps a local model port local: loopback by default, a bearer key when asked for (and
required off loopback), Host-header checks against DNS rebinding, Origin checks and no simple
(form, text/plain) bodies from browsers against cross-site requests, and a body size limit.

Browsers say who is asking: they send `Origin` on every cross-origin POST and `Sec-Fetch-Site`
on every request. A web page can send a "simple" POST (`text/plain` or a form type) anywhere
with no CORS preflight, so without these checks any page open in the browser could run the
local models. Non-browser clients (curl, SDKs, editors) send neither header and are unaffected:
the README's `curl -d` (a form Content-Type) keeps working."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidecar.errors import InvalidRequest
from sidecar.http.errors import OpenAIError, shaped

MAX_BODY_BYTES = 32 << 20  # images come inline as data: URLs
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
WILDCARD = {"0.0.0.0", "::", ""}
# The extension's chat webview runs at vscode-webview://<id>.
TRUSTED_SCHEMES = ("vscode-webview",)
# Content types a browser POSTs cross-origin without a preflight (the CORS "simple" ones).
SIMPLE_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")


class InsecureBindError(InvalidRequest, ValueError):
    """A bind address or CORS setting that would expose the models without an API key."""


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


def read_api_key(key: str | None, key_file: Path | None) -> str | None:
    """The key given directly (flag or MLX_SIDECAR_API_KEY) or the first line of `key_file`
    (so it need not appear in `ps`). Raises ValueError for an unreadable or empty file."""
    if key:
        return key.strip() or None
    if key_file is None:
        return None
    try:
        lines = Path(key_file).expanduser().read_text().splitlines()
    except OSError as e:
        raise ValueError(f"cannot read the API key file {str(key_file)!r}: {e.strerror}") from e
    first = lines[0].strip() if lines else ""
    if not first:
        raise ValueError(f"the API key file {str(key_file)!r} is empty")
    return first


def origin_allowed(origin: str, cors_origins: set[str]) -> bool:
    """Loopback pages, the configured CORS origins and VS Code webviews; not `null` (what
    sandboxed frames and file: pages send, so any page can produce it)."""
    origin = origin.strip().lower().rstrip("/")
    if origin in cors_origins:
        return True
    parts = urlsplit(origin)
    if parts.scheme in TRUSTED_SCHEMES:
        return True
    return parts.scheme in ("http", "https") and is_loopback(parts.hostname or "")


def from_browser(headers: Headers) -> bool:
    return "origin" in headers or "sec-fetch-site" in headers


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
    """ASGI middleware: Host check (421), cross-site browser requests (403), bearer key (401),
    simple bodies from browsers without a key (415), body size (413)."""

    def __init__(
        self,
        app: ASGIApp,
        api_key: str | None,
        allowed_hosts: set[str] | None,
        max_body_bytes: int = MAX_BODY_BYTES,
        cors_origins: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.allowed_hosts = allowed_hosts
        self.max_body_bytes = max_body_bytes
        self.cors_origins = {o.strip().lower().rstrip("/") for o in cors_origins}

    def cross_site(self, headers: Headers, method: str) -> OpenAIError | None:
        origin = headers.get("origin")
        if origin is not None and not origin_allowed(origin, self.cors_origins):
            return OpenAIError(
                403,
                f"requests from origin {origin!r} are not allowed; start the sidecar with "
                "--cors-origin to allow a web page",
                code="origin_not_allowed",
            )
        if origin is None and headers.get("sec-fetch-site") == "cross-site":
            return OpenAIError(403, "cross-site requests are not allowed", code="cross_site")
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        # No Content-Type (a Blob body) needs no preflight either. With a key the browser had
        # to preflight the Authorization header: not a blind POST.
        simple = media in SIMPLE_TYPES or not media
        if method == "POST" and not self.api_key and from_browser(headers) and simple:
            return OpenAIError(
                415,
                "browsers must send JSON bodies as 'Content-Type: application/json', "
                f"not {media or 'no Content-Type'!r}",
                code="unsupported_media_type",
            )
        return None

    def refuse(self, headers: Headers, method: str = "GET") -> OpenAIError | None:
        if self.allowed_hosts is not None:
            host = host_name(headers.get("host", ""))
            if host not in self.allowed_hosts:
                return OpenAIError(
                    421, f"host {host!r} is not served here", param=None, code="invalid_host"
                )
        refused = self.cross_site(headers, method)
        if refused is not None:
            return refused
        if self.api_key:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            # The Anthropic SDK (and Claude Code) send the key as `x-api-key`.
            token = token if scheme.lower() == "bearer" else headers.get("x-api-key", "")
            if not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
                return OpenAIError(
                    401,
                    "missing or wrong API key: send 'Authorization: Bearer <key>' "
                    "(or 'x-api-key: <key>')",
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
        error = self.refuse(Headers(scope=scope), scope["method"])
        if error is not None:
            await shaped(error, scope["path"])(scope, receive, send)
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

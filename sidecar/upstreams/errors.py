"""Upstream failures as the sidecar's errors: each names the upstream, and an upstream's own HTTP
error (a wrong key's 401, an unknown model's 404) keeps its status on the OpenAI port."""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.errors import ErrorKind, SidecarError


class UpstreamError(SidecarError):
    """An upstream answered with an error, or could not be reached. `http_status` is what the
    OpenAI port answers (the upstream's own status for its 4xx and 5xx, 502/503/504 when there
    was no answer); the JSON-RPC edge maps `kind` like any other error."""

    kind = ErrorKind.UNAVAILABLE

    def __init__(
        self, upstream: str, message: str, http_status: int = 502, code: str | None = None
    ) -> None:
        super().__init__(f"upstream {upstream!r}: {message}")
        self.upstream = upstream
        self.http_status = http_status
        self.error_code = code or "upstream_error"

    @property
    def code(self) -> str:  # type: ignore[override]  # the upstream's own code when it sent one
        return self.error_code


class UpstreamRejected(UpstreamError):
    """A 4xx other than auth and rate limits: the request itself was wrong for the upstream."""

    kind = ErrorKind.INVALID_REQUEST


def answered(upstream: str, status: int, body: bytes) -> UpstreamError:
    """The error for an upstream's non-2xx answer, with the message it gave."""
    message, code = _error_fields(body)
    text = f"answered {status}" + (f": {message}" if message else "")
    if status in (401, 403):
        text += " (check the API key configured for this upstream)"
    cls = (
        UpstreamRejected if 400 <= status < 500 and status not in (401, 403, 429) else UpstreamError
    )
    return cls(upstream, text, http_status=status, code=code)


def _error_fields(body: bytes) -> tuple[str | None, str | None]:
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode(errors="replace").strip()[:200]
        return (text or None), None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        return str(error.get("message") or "") or None, str(code) if code else None
    if isinstance(error, str):
        return error, None
    if isinstance(data, dict) and isinstance(data.get("detail"), str):
        return data["detail"], None
    return None, None

"""Upstream failures as the sidecar's errors: each names the upstream, and an upstream's own HTTP
error (a wrong key's 401, an unknown model's 404) keeps its status on the OpenAI port."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from sidecar.errors import UpstreamError, UpstreamRejected


def answered(
    upstream: str, status: int, body: bytes, redact: Callable[[str], str]
) -> UpstreamError:
    """The error for an upstream's non-2xx answer, with the message it gave (`redact`ed: an
    upstream may echo the Authorization header it was sent)."""
    message, code = _error_fields(body)
    message = redact(message) if message else message
    code = redact(code) if code else code
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

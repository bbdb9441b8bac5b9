"""Shared pieces of the hypothesis tests that drive an in-process server from a thread."""

from __future__ import annotations

import http.client
import time
from typing import Any

import orjson
from hypothesis import HealthCheck, settings

FUZZ = settings(
    max_examples=25,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
REQUEST_TIMEOUT_S = 20


def post(server_port: int, path: str, body: dict[str, Any]) -> tuple[int, bytes, float]:
    """One blocking request (hypothesis runs on a thread; the server lives on the loop)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", server_port, timeout=REQUEST_TIMEOUT_S)
    try:
        head = {"Content-Type": "application/json"}
        conn.request("POST", path, body=orjson.dumps(body), headers=head)
        resp = conn.getresponse()
        return resp.status, resp.read(), time.monotonic() - started
    finally:
        conn.close()


def check_error_body(status: int, raw: bytes) -> dict[str, Any] | None:
    assert b"Traceback" not in raw
    if status >= 400:
        error = orjson.loads(raw)["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
        return error
    return None

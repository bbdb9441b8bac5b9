"""Who may use the port: API key, non-loopback refusal, body limits, CORS, clean stop. The server
runs in-process on the test's loop (`serve_http`, as `stdio --http-port` uses it); nothing here
loads a model."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any
from unittest.mock import ANY

import anthropic
import openai
import orjson
import pytest

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.http.security import InsecureBindError, host_name, is_loopback
from sidecar.http.server import HttpServer, serve_http
from tests.helpers.http_client import request

KEY = "test-key-123"


@pytest.fixture(scope="module")
async def bare_engine(settings: Settings) -> AsyncIterator[Engine]:
    async with Engine(settings) as engine:
        yield engine


@pytest.fixture(scope="module")
async def keyed(bare_engine: Engine) -> AsyncIterator[HttpServer]:
    server = await serve_http(
        bare_engine,
        "127.0.0.1",
        0,
        api_key=KEY,
        max_body_bytes=1000,
        cors_origins=["http://ok.example"],
    )
    yield server
    await server.stop()


def client(server: HttpServer, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=30)


async def test_api_key_is_required_when_set(keyed: HttpServer) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        await client(keyed, "wrong").models.list()
    assert info.value.code == "invalid_api_key"
    status, headers, body = await asyncio.to_thread(request, keyed.port, "GET", "/health")
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert orjson.loads(body)["error"]["type"] == "authentication_error"
    models = await client(keyed, KEY).models.list()
    assert any((m.model_extra or {})["kind"] == "text" for m in models.data)


async def test_the_anthropic_sdk_key_header_and_errors_on_the_messages_api(
    keyed: HttpServer,
) -> None:
    """`x-api-key` carries the key as `Authorization: Bearer` does; refusals on /v1/messages
    come in Anthropic's error shape, so its SDK raises its own exception classes."""
    wrong = anthropic.AsyncAnthropic(base_url=keyed.url, api_key="wrong", max_retries=0)
    ask: Any = [{"role": "user", "content": "Hi"}]
    with pytest.raises(anthropic.AuthenticationError) as info:
        await wrong.messages.count_tokens(model="m", messages=ask)
    assert info.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": ANY},
    }
    right = anthropic.AsyncAnthropic(base_url=keyed.url, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as bad:  # past the key: the body is checked
        await right.messages.create(model="m", max_tokens=0, messages=ask)
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    status, _, body = await asyncio.to_thread(
        request, keyed.port, "GET", "/v1/models", None, {"x-api-key": KEY}
    )
    assert status == 200 and orjson.loads(body)["data"]
    browser = {"x-api-key": KEY, "Origin": "http://evil.example", "Content-Type": "text/plain"}
    status, _, body = await asyncio.to_thread(
        request, keyed.port, "POST", "/v1/messages", b"{}", browser
    )
    assert status == 403 and orjson.loads(body)["error"]["type"] == "permission_error"


async def test_chunked_body_over_the_limit_is_a_413(keyed: HttpServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"input": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}'

    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    status, _, body = await asyncio.to_thread(
        request, keyed.port, "POST", "/v1/embeddings", chunks(), auth
    )
    assert status == 413
    assert orjson.loads(body)["error"]["code"] == "request_too_large"


async def test_cors_only_for_configured_origins(keyed: HttpServer, bare_engine: Engine) -> None:
    preflight = {
        "Origin": "http://ok.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    status, headers, _ = await asyncio.to_thread(
        request, keyed.port, "OPTIONS", "/v1/chat/completions", None, preflight
    )
    assert status == 200 and headers["access-control-allow-origin"] == "http://ok.example"
    evil = preflight | {"Origin": "http://evil.example"}
    _, headers, _ = await asyncio.to_thread(
        request, keyed.port, "OPTIONS", "/v1/chat/completions", None, evil
    )
    assert "access-control-allow-origin" not in headers

    plain = await serve_http(bare_engine, "127.0.0.1", 0)  # CORS off by default
    try:
        _, headers, _ = await asyncio.to_thread(
            request, plain.port, "GET", "/health", None, {"Origin": "http://ok.example"}
        )
        assert "access-control-allow-origin" not in headers
    finally:
        await plain.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.to_thread(request, plain.port, "GET", "/health")


async def test_non_loopback_bind_needs_a_key_and_busy_port_is_an_error(
    bare_engine: Engine, keyed: HttpServer
) -> None:
    with pytest.raises(InsecureBindError, match="--api-key"):
        await serve_http(bare_engine, "0.0.0.0", 0)
    with pytest.raises(OSError):
        await serve_http(bare_engine, "127.0.0.1", keyed.port)


def test_cli_refuses_non_loopback_without_key(sidecar_env: dict[str, str]) -> None:
    env = {k: v for k, v in sidecar_env.items() if k != "MLX_SIDECAR_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "without an API key" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_host_names_and_loopback() -> None:
    assert host_name("localhost:8080") == "localhost"
    assert host_name("[::1]:8080") == "::1"
    assert host_name("Example.COM") == "example.com"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")

"""The port against hostile clients and bad input: web pages (Origin, simple content types),
stalled connections (header and body timeouts, the connection cap), loose types, oversize
requests, a corrupt model, and the OpenAPI schema. Servers run in-process on the test loop on
an engine that loads no model (requests are refused before any would run)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from pygls.exceptions import JsonRpcInvalidParams

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.http.security import read_api_key
from sidecar.http.server import HttpServer, serve_http
from sidecar.limits import Limits
from sidecar.lsp import chat as lsp_chat
from sidecar.lsp import embed as lsp_embed
from sidecar.lsp import models as lsp_models
from sidecar.models.defaults import CHAT_MODEL
from tests.helpers.http_client import request
from tests.helpers.waiting import until

KEY = "hardening-key"
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
TIMEOUT_S = 0.5
MAX_CONNECTIONS = 6


@pytest.fixture(scope="module")
async def bare_engine(settings: Settings) -> AsyncIterator[Engine]:
    small = settings.model_copy(update={"limits": Limits(max_prompt_chars=2000)})
    async with Engine(small) as engine:
        yield engine


@pytest.fixture(scope="module")
async def open_port(bare_engine: Engine) -> AsyncIterator[HttpServer]:
    """No key, short timeouts, a small connection cap: as `serve` runs by default, faster."""
    server = await serve_http(
        bare_engine,
        "127.0.0.1",
        0,
        cors_origins=["http://ok.example"],
        header_timeout_s=TIMEOUT_S,
        body_timeout_s=TIMEOUT_S,
        max_connections=MAX_CONNECTIONS,
    )
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def keyed_port(bare_engine: Engine) -> AsyncIterator[HttpServer]:
    server = await serve_http(bare_engine, "127.0.0.1", 0, api_key=KEY)
    yield server
    await server.stop()


async def post(
    server: HttpServer, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    head = {"Content-Type": "application/json", **(headers or {})}
    status, _, out = await asyncio.to_thread(request, server.port, "POST", path, raw, head)
    return status, orjson.loads(out or b"{}")


def error_of(body: dict[str, Any]) -> dict[str, Any]:
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


# -- browsers ---------------------------------------------------------------------------------


async def test_a_web_pages_simple_post_is_refused(open_port: HttpServer) -> None:
    evil = {"Content-Type": "text/plain", "Origin": "http://evil.example"}
    status, body = await post(open_port, "/v1/chat/completions", CHAT, evil)
    assert status == 403 and error_of(body)["code"] == "origin_not_allowed"
    # a page that hides its Origin still says where it is with Sec-Fetch-Site
    hidden = {"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"}
    status, body = await post(open_port, "/v1/chat/completions", CHAT, hidden)
    assert status == 403 and error_of(body)["code"] == "cross_site"
    for origin in ("null", "http://localhost.evil.example", "https://evil.example"):
        status, _ = await post(open_port, "/v1/embeddings", {"input": "x"}, {"Origin": origin})
        assert status == 403, origin


async def test_allowed_origins_pass_but_not_with_simple_bodies(open_port: HttpServer) -> None:
    for origin in (
        "http://localhost:3000",
        "http://127.0.0.1:5173",
        "http://[::1]:8000",
        "vscode-webview://1a2b3c",
        "http://ok.example",
    ):
        status, _, _ = await asyncio.to_thread(
            request, open_port.port, "GET", "/health", None, {"Origin": origin}
        )
        assert status == 200, origin
        # JSON goes through the guard to validation (an empty body is a 400, not a 403)
        status, body = await post(open_port, "/v1/embeddings", {}, {"Origin": origin})
        assert status == 400 and error_of(body)["param"] == "input", origin
        for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""):
            status, body = await post(
                open_port, "/v1/embeddings", {}, {"Origin": origin, "Content-Type": media}
            )
            assert status == 415 and error_of(body)["code"] == "unsupported_media_type"


async def test_curl_form_posts_without_origin_still_work(open_port: HttpServer) -> None:
    """The README's `curl -d` sends a form Content-Type and no Origin: not a browser."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, body = await post(open_port, "/v1/embeddings", {}, form)
    assert status == 400 and error_of(body)["param"] == "input"


async def test_with_a_key_given_simple_bodies_pass(keyed_port: HttpServer) -> None:
    page = {"Origin": "http://localhost:3000", "Content-Type": "text/plain"}
    status, _ = await post(keyed_port, "/v1/embeddings", {}, page)
    assert status == 401
    status, body = await post(
        keyed_port, "/v1/embeddings", {}, page | {"Authorization": f"Bearer {KEY}"}
    )
    assert status == 400 and error_of(body)["param"] == "input"
    evil = page | {"Origin": "http://evil.example", "Authorization": f"Bearer {KEY}"}
    status, _ = await post(keyed_port, "/v1/embeddings", {}, evil)
    assert status == 403


def test_api_key_from_a_file_or_the_environment(tmp_path: Path, monkeypatch: Any) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("  secret-from-file \nsecond line\n")
    assert read_api_key(None, key_file) == "secret-from-file"
    assert read_api_key("direct", key_file) == "direct"
    assert read_api_key(None, None) is None
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_api_key(None, tmp_path / "empty")
    with pytest.raises(ValueError, match="cannot read"):
        read_api_key(None, tmp_path / "missing")
    monkeypatch.setenv("MLX_SIDECAR_API_KEY_FILE", str(key_file))
    monkeypatch.setenv("MLX_SIDECAR_API_KEY", "from-env")
    settings = Settings()
    assert settings.api_key == "from-env" and settings.api_key_file == key_file


def test_cli_reads_the_key_file(sidecar_env: dict[str, str], tmp_path: Path) -> None:
    """A key file counts as a key for a non-loopback bind; an unreadable one is a clear error."""
    env = {k: v for k, v in sidecar_env.items() if not k.startswith("MLX_SIDECAR_API_KEY")}
    args = [sys.executable, "-m", "sidecar", "serve", "--host", "0.0.0.0", "--port", "0"]
    done = subprocess.run(
        [*args, "--api-key-file", str(tmp_path / "missing")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "cannot read the API key file" in done.stderr
    assert "Traceback" not in done.stderr


# -- stalled clients --------------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket's timeout
    bounds the wait: a server that never closes fails the test)."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


async def test_headers_that_never_finish_are_cut_off(open_port: HttpServer) -> None:
    def stall() -> bytes:
        with connect(open_port.port) as sock:
            sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            return read_until_closed(sock)

    started = time.monotonic()
    assert await asyncio.to_thread(stall) == b""
    assert time.monotonic() - started < 5


async def test_a_body_that_never_finishes_is_a_408(open_port: HttpServer) -> None:
    def stall() -> bytes:
        with connect(open_port.port) as sock:
            sock.sendall(
                b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"input": '
            )
            return read_until_closed(sock)

    reply = await asyncio.to_thread(stall)
    assert reply.startswith(b"HTTP/1.1 408")
    body = orjson.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert error_of(body)["code"] == "request_timeout"


async def test_an_abandoned_body_is_one_info_line(
    open_port: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with connect(open_port.port) as sock:
        sock.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"in'
        )
        await until(
            lambda: open_port.server.server_state.tasks, timeout=10, what="the request to start"
        )
    await until(
        lambda: "left before sending the whole body" in caplog.text, timeout=10, what="the log line"
    )
    await until(
        lambda: not open_port.server.server_state.tasks, timeout=10, what="the request to end"
    )
    mine = [r for r in caplog.records if r.name.startswith(("sidecar", "uvicorn"))]
    assert [r.levelno for r in mine] == [logging.INFO], caplog.text
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in mine)


async def test_idle_connections_beyond_the_cap_get_a_503_then_clear(
    open_port: HttpServer,
) -> None:
    idle = [await asyncio.to_thread(connect, open_port.port) for _ in range(MAX_CONNECTIONS)]
    try:
        await until(
            lambda: len(open_port.server.server_state.connections) >= MAX_CONNECTIONS,
            timeout=10,
            what="the idle connections",
        )
        status, _, _ = await asyncio.to_thread(request, open_port.port, "GET", "/health")
        assert status == 503
        # the header timeout closes the idle ones: the port serves again without help
        await until(
            lambda: not open_port.server.server_state.connections, timeout=10, what="the cut-off"
        )
        status, _, _ = await asyncio.to_thread(request, open_port.port, "GET", "/health")
        assert status == 200
    finally:
        for sock in idle:
            sock.close()


# -- types and sizes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", CHAT | {"stream": "yes"}, "stream"),
        ("/v1/chat/completions", CHAT | {"stream_options": {"include_usage": 1}}, "stream_options"),
        ("/v1/chat/completions", CHAT | {"logprobs": "true"}, "logprobs"),
        ("/v1/chat/completions", CHAT | {"max_tokens": "1"}, "max_tokens"),
        ("/v1/completions", {"prompt": "x", "echo": "yes"}, "echo"),
        ("/v1/completions", {"prompt": [1, True]}, "prompt"),
        ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
        ("/v1/embeddings", {"input": ["x"] * 10_000}, "input"),
        ("/v1/embeddings", {"input": "x" * 40_000}, "input"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}] * 1025},
            "messages",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x" * 2001}]},
            "messages",
        ),
        ("/v1/completions", {"prompt": "x" * 2001}, "prompt"),
        ("/v1/completions", {"prompt": "x", "suffix": "y" * 2001}, "suffix"),
        ("/v1/completions", {"prompt": "x", "stop": ["s" * 257]}, "stop"),
        ("/v1/completions", {"prompt": "x", "stop": ["s"] * 17}, "stop"),
    ],
)
async def test_loose_types_and_oversize_requests_are_400s(
    open_port: HttpServer, path: str, body: dict[str, Any], param: str
) -> None:
    status, reply = await post(open_port, path, body)
    assert status == 400, reply
    error = error_of(reply)
    assert error["param"] == param and error["type"] == "invalid_request_error"


async def test_openapi_documents_the_request_bodies(open_port: HttpServer) -> None:
    status, _, raw = await asyncio.to_thread(request, open_port.port, "GET", "/openapi.json")
    assert status == 200
    doc = orjson.loads(raw)
    schemas = doc["components"]["schemas"]
    for path, model in [
        ("/v1/chat/completions", "ChatRequest"),
        ("/v1/completions", "CompletionRequest"),
        ("/v1/embeddings", "EmbeddingRequest"),
    ]:
        body = doc["paths"][path]["post"]["requestBody"]
        assert body["content"]["application/json"]["schema"]["$ref"].endswith("/" + model)
        assert body["required"] is True
    assert "messages" in schemas["ChatRequest"]["properties"]
    assert schemas["Message"]["properties"]["role"]["enum"] == [
        "system",
        "developer",
        "user",
        "assistant",
        "tool",
    ]
    assert schemas["ChatRequest"]["properties"]["stream"]["type"] == "boolean"


# -- a corrupt model --------------------------------------------------------------------------


async def test_a_corrupt_model_is_a_500_with_a_code(
    settings: Settings, models_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "models" / "Broken-Model"
    shutil.copytree(models_dir / CHAT_MODEL, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    mine = settings.model_copy(update={"models_dir": tmp_path / "models"})
    async with Engine(mine) as engine:
        server = await serve_http(engine, "127.0.0.1", 0)
        try:
            status, body = await post(
                server, "/v1/chat/completions", CHAT | {"model": "Broken-Model"}
            )
        finally:
            await server.stop()
    assert status == 500
    error = error_of(body)
    assert error["code"] == "model_load_failed" and error["param"] == "model"
    assert "Broken-Model" in error["message"]


# -- the JSON-RPC edge ------------------------------------------------------------------------


def lsp_session(settings: Settings) -> Any:
    """What the handlers touch before the engine runs anything: settings and roles."""
    return SimpleNamespace(engine=SimpleNamespace(settings=settings), roles={})


@pytest.mark.parametrize(
    ("handler", "params", "field"),
    [
        (lsp_models.load, {"model": CHAT_MODEL, "pin": "yes"}, "pin"),
        (lsp_chat.chat, {"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        (
            lsp_chat.chat,
            {"messages": [{"role": "user", "content": "x"}], "maxTokens": "5"},
            "maxTokens",
        ),
        (
            lsp_chat.chat,
            {"messages": [{"role": "user", "content": "x"}], "stop": ["s"] * 17},
            "stop",
        ),
        (lsp_chat.chat, {"messages": [{"role": "user", "content": "x" * 2001}]}, "messages"),
        (lsp_embed.embed, {"input": ["x"] * 10_000}, "input"),
    ],
)
async def test_json_rpc_params_are_strict_and_bounded(
    bare_engine: Engine, handler: Any, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(JsonRpcInvalidParams) as info:
        await handler(lsp_session(bare_engine.settings), params)
    assert info.value.code == -32602
    assert info.value.data is not None, info.value.message
    assert field in info.value.data["fields"], info.value.message

"""The editor's server process: it exits when its parent dies, `shutdown` + `exit` ends it with
0, and `--http-port` serves the OpenAI API from the same process. No model is loaded here."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.request
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.helpers.lsp import start_lsp

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def start(
    env: dict[str, str],
    *args: str,
    process_id: int | None = None,
    options: dict[str, Any] | None = None,
) -> LanguageClient:
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "sidecar", "stdio", *args], server_env=env
    )
    client = await start_lsp(config)
    await client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            process_id=process_id,
            initialization_options=options,
        )
    )
    return client


async def exit_code(client: LanguageClient, timeout: float = 15) -> int:
    assert client._server is not None
    return await asyncio.wait_for(client._server.wait(), timeout)


async def test_exits_when_the_parent_dies(sidecar_env: dict[str, str]) -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    client = await start(sidecar_env, process_id=parent.pid)
    try:
        status = await client.protocol.send_request_async("mlx/status", None)
        assert status.running == 0
        parent.kill()
        parent.wait()
        assert await exit_code(client) == 0
    finally:
        parent.kill()
        await client.stop()


async def test_shutdown_then_exit_ends_with_zero(sidecar_env: dict[str, str]) -> None:
    client = await start(sidecar_env)
    try:
        await client.shutdown_async(None)
        client.exit(None)
        assert await exit_code(client) == 0
    finally:
        await client.stop()


async def test_exit_without_shutdown_ends_with_one(sidecar_env: dict[str, str]) -> None:
    client = await start(sidecar_env)
    try:
        client.exit(None)
        assert await exit_code(client) == 1
    finally:
        await client.stop()


async def test_http_port_serves_the_same_engine(sidecar_env: dict[str, str]) -> None:
    client = await start(sidecar_env, "--http-port", "0")
    try:
        status = await client.protocol.send_request_async("mlx/status", None)
        assert status.http_url and status.http_url.startswith("http://127.0.0.1:")
        with await asyncio.to_thread(urllib.request.urlopen, f"{status.http_url}/v1/models") as r:
            assert r.status == 200
            models = json.loads(r.read())
        assert "SmolLM2-135M-Instruct" in {m["id"] for m in models["data"]}
        await client.shutdown_session()
        assert await exit_code(client) == 0
    finally:
        await client.stop()


async def test_http_port_from_initialization_options(sidecar_env: dict[str, str]) -> None:
    with socket.socket() as s:  # a port free now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = await start(sidecar_env, options={"httpPort": port})
    try:
        status = await client.protocol.send_request_async("mlx/status", None)
        assert status.http_url == f"http://127.0.0.1:{port}"
        with await asyncio.to_thread(urllib.request.urlopen, f"{status.http_url}/health") as r:
            assert r.status == 200
    finally:
        await client.shutdown_session()
        await client.stop()


async def test_http_port_zero_from_the_editor_is_off(sidecar_env: dict[str, str]) -> None:
    # The extension's default `httpPort: 0` is documented as "off": no port per window.
    client = await start(sidecar_env, options={"httpPort": 0})
    try:
        status = await client.protocol.send_request_async("mlx/status", None)
        assert status.http_url is None
    finally:
        await client.shutdown_session()
        await client.stop()

"""Misbehaving upstreams (issue 23, defect 4), each a mode of the loopback fake in
tests/helpers/bad_upstream.py, through the real OpenAI port (in-process, on an engine that loads
no model) and a real `mlx-sidecar stdio`: the key never comes back, a broken upstream never
breaks `GET /v1/models`, every reply is bounded in time and size, a stream is not relayed past
max_tokens, and what is not a stream (or breaks) is an error naming the upstream, never a
200 with nothing in it."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.http.server import HttpServer, serve_http
from sidecar.upstreams.router import Router
from sidecar.upstreams.settings import UpstreamSettings
from tests.helpers import bad_upstream
from tests.helpers.fuzzing import FUZZ, check_error_body, post
from tests.helpers.lsp import start_lsp

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY = "sk-fault-secret-0123456789"
MESSAGES = [{"role": "user", "content": "hi"}]
TOTAL_S = 2.0  # total_timeout_s of every fake upstream here
LIST_S = 3.0  # models_timeout_s
LIMITS: dict[str, Any] = {
    "api_key_env": "FAULT_KEY",
    "retries": 0,
    "breaker_failures": 1000,  # these tests are about each reply, not the breaker
    "first_byte_timeout_s": 1.0,
    "total_timeout_s": TOTAL_S,
    "max_line_bytes": 128 << 10,
    "max_body_bytes": 1 << 20,
    "models_timeout_s": LIST_S,
}


@pytest.fixture(scope="module")
def fake() -> Iterator[bad_upstream.Server]:
    server = bad_upstream.Server()
    yield server
    server.stop()


def upstreams(fake: bad_upstream.Server, modes: tuple[str, ...]) -> dict[str, Any]:
    return {m: UpstreamSettings(base_url=fake.url(m), **LIMITS) for m in modes}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def port(
    settings: Settings, fake: bad_upstream.Server, monkeypatch_module: pytest.MonkeyPatch
) -> AsyncIterator[HttpServer]:
    monkeypatch_module.setenv("FAULT_KEY", KEY)
    local = settings.model_copy(update={"upstreams": upstreams(fake, bad_upstream.MODES)})
    async with Engine(local) as engine:
        router = Router(engine, local)
        http = await serve_http(engine, port=0, router=router)
        yield http
        await http.stop()
        await router.close()


def client(http: HttpServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"{http.url}/v1", timeout=30)


async def chat(http: HttpServer, mode: str, stream: bool, **extra: Any) -> httpx.Response:
    body = {"model": f"{mode}/m", "messages": MESSAGES, "stream": stream, **extra}
    async with client(http) as c:
        return await c.post("/chat/completions", json=body)


def sse(response: httpx.Response) -> list[dict[str, Any]]:
    lines = response.text.splitlines()
    return [orjson.loads(x[6:]) for x in lines if x.startswith("data: {")]


# -- the key ----------------------------------------------------------------------------------


async def test_an_upstream_that_echoes_the_key_never_gets_it_relayed(port: HttpServer) -> None:
    for stream in (False, True):
        r = await chat(port, "echo", stream)
        assert r.status_code == 401, r.text
        assert KEY not in r.text and "Bearer ***" in r.text and "upstream 'echo'" in r.text
        r = await chat(port, "echo_ok", stream)
        assert r.status_code == 200, r.text
        assert KEY not in r.text and "you sent Bearer ***" in r.text
    async with client(port) as c:
        listed = await c.get("/models")
    assert listed.status_code == 200 and KEY not in listed.text
    assert "echo_ok/m Bearer ***" in [m["id"] for m in listed.json()["data"]]


# -- the model list ---------------------------------------------------------------------------


async def test_a_broken_upstream_never_breaks_the_model_list(port: HttpServer) -> None:
    started = time.monotonic()
    async with client(port) as c:
        r = await c.get("/models")
    took = time.monotonic() - started
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [m["id"] for m in body["data"]]
    assert "ok/m" in ids and "SmolLM2-135M-Instruct" in ids  # the local ones too
    errors = {e["upstream"]: e["error"] for e in body["upstream_errors"]}
    assert {"midclose", "drip", "html", "junk", "echo", "bigbody", "slow"} <= set(errors)
    assert "mid-reply" in errors["midclose"] and "did not finish within" in errors["drip"]
    assert "ok" not in errors
    assert took < LIST_S * 3  # the listing timeout, not the drip's or the slow one's 30 s


# -- errors that looked like success --------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("html", "'text/html', not text/event-stream"),
        ("json", "'application/json', not text/event-stream"),
        ("junk", "without a single event"),
    ],
)
async def test_a_stream_that_is_not_an_event_stream_is_an_error(
    port: HttpServer, mode: str, message: str
) -> None:
    r = await chat(port, mode, True)
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert f"upstream {mode!r}" in error["message"] and message in error["message"]


async def test_a_stream_is_not_relayed_past_max_tokens(port: HttpServer) -> None:
    r = await chat(port, "flood", True, max_tokens=16)
    assert r.status_code == 200
    events = sse(r)
    texts = [e["choices"][0]["delta"].get("content") for e in events if e.get("choices")]
    assert len([t for t in texts if t]) == 16
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    assert r.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize(
    ("mode", "stream", "status", "message"),
    [
        ("midclose", False, 502, "the connection broke mid-reply"),
        ("drip", True, 504, f"did not finish within {TOTAL_S:g} s"),
        ("drip", False, 504, f"did not finish within {TOTAL_S:g} s"),
        ("longline", True, 502, "max_line_bytes"),
        ("bigbody", False, 502, "max_body_bytes"),
        ("slow", False, 504, "first_byte_timeout_s"),
    ],
)
async def test_every_reply_is_bounded_and_names_the_upstream(
    port: HttpServer, mode: str, stream: bool, status: int, message: str
) -> None:
    started = time.monotonic()
    r = await chat(port, mode, stream)
    assert time.monotonic() - started < TOTAL_S * 5
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert f"upstream {mode!r}" in error["message"] and message in error["message"]
    assert (await chat(port, "ok", False)).status_code == 200  # the port serves on


async def test_a_stream_that_breaks_midway_says_so_in_the_stream(port: HttpServer) -> None:
    r = await chat(port, "midclose", True)
    assert r.status_code == 200  # its first event was out before it broke
    events = sse(r)
    assert events[0]["choices"][0]["delta"]["content"] == "half"
    assert "upstream 'midclose'" in events[-1]["error"]["message"]
    assert "mid-reply" in events[-1]["error"]["message"]


# -- JSON-RPC ----------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def editor(
    sidecar_env: dict[str, str], fake: bad_upstream.Server
) -> AsyncIterator[LanguageClient]:
    env = {**sidecar_env, "FAULT_KEY": KEY}
    for mode in ("echo", "echo_ok", "flood", "json"):
        prefix = f"MLX_SIDECAR_UPSTREAMS__{mode.upper()}__"
        env[prefix + "BASE_URL"] = fake.url(mode)
        env[prefix + "API_KEY_ENV"] = "FAULT_KEY"
        env[prefix + "RETRIES"] = "0"
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "sidecar", "stdio"], server_env=env
    )
    lsp = await start_lsp(config)
    await lsp.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities()))
    deltas: list[Any] = []
    lsp.deltas = deltas  # type: ignore[attr-defined]
    lsp.feature("mlx/chat/delta")(lambda params: deltas.append(params))
    yield lsp
    await lsp.shutdown_session()
    await lsp.stop()


async def rpc_chat(lsp: LanguageClient, **params: Any) -> Any:
    request = lsp.protocol.send_request_async("mlx/chat", {"messages": MESSAGES, **params})
    return await asyncio.wait_for(request, 60)


async def test_the_key_is_not_relayed_over_json_rpc(editor: LanguageClient) -> None:
    with pytest.raises(JsonRpcException) as e:
        await rpc_chat(editor, model="echo/m")
    assert KEY not in str(e.value) and "Bearer ***" in str(e.value)
    assert "upstream 'echo'" in str(e.value)
    answer = await rpc_chat(editor, model="echo_ok/m")
    assert KEY not in answer.text and answer.text == "you sent Bearer ***"


async def test_json_rpc_chat_stops_at_max_tokens_and_refuses_a_non_stream(
    editor: LanguageClient,
) -> None:
    answer = await rpc_chat(editor, model="flood/m", max_tokens=16, stream_token="f")
    assert answer.text == "x" * 16 and answer.finish_reason == "length"
    with pytest.raises(JsonRpcException) as e:  # used to be empty text and "stop"
        await rpc_chat(editor, model="json/m")
    assert "upstream 'json'" in str(e.value) and "not text/event-stream" in str(e.value)


# -- misbehaving upstreams --------------------------------------------------------------------


async def test_fuzzed_calls_to_misbehaving_upstreams_are_bounded_and_clear(
    port: HttpServer,
) -> None:
    @FUZZ
    @given(
        mode=st.sampled_from(bad_upstream.MODES),
        path=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]),
        stream=st.booleans(),
        max_tokens=st.none() | st.integers(1, 8),
    )
    def one(mode: str, path: str, stream: bool, max_tokens: int | None) -> None:
        body: dict[str, Any] = {"model": f"{mode}/m", "stream": stream}
        if path == "/v1/chat/completions":
            body["messages"] = [{"role": "user", "content": "hi"}]
        elif path == "/v1/completions":
            body["prompt"] = "hi"
        else:
            body = {"model": f"{mode}/m", "input": ["hi"]}
        if max_tokens is not None and "input" not in body:
            body["max_tokens"] = max_tokens
        status, raw, took = post(port.port, path, body)
        assert took < TOTAL_S * 4, (mode, path, stream, took)
        assert KEY.encode() not in raw
        error = check_error_body(status, raw)
        if error is not None:
            assert f"upstream '{mode}'" in error["message"], error
        if mode in ("html", "junk", "midclose", "drip", "longline", "slow") and not (
            status == 200 and stream and mode == "midclose"
        ):
            assert status >= 400, (mode, path, stream, raw[:300])
        if status == 200 and body.get("stream"):
            assert raw.endswith(b"data: [DONE]\n\n")
            events = [orjson.loads(x[6:]) for x in raw.split(b"\n") if x.startswith(b"data: {")]
            outputs = [e for e in events if e.get("choices")]
            if max_tokens is not None:
                assert len(outputs) <= max_tokens + 1, (mode, len(outputs))

    await asyncio.to_thread(one)
    ok = {"model": "ok/m", "messages": [{"role": "user", "content": "hi"}]}
    status, _, _ = await asyncio.to_thread(post, port.port, "/v1/chat/completions", ok)
    assert status == 200

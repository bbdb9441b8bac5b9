"""Remote upstreams over real HTTP: a second `mlx-sidecar serve` (SmolLM2, behind an API key)
stands in for a team's vLLM cluster. The sidecar in front of it runs in this process (so every
log record can be captured) on its own engine with one batch slot (so saturation is two
requests), plus a `serve` subprocess whose memory budget is too small to load anything (the load
failure fallback) and a `stdio` subprocess for the editor's side (keys from SecretStorage).

Checked: listing (`team/MODEL` ids; a dead upstream does not break the list), routing of chat,
completions and embeddings, a streamed relay with the upstream's own content deltas, a client
that leaves cancelling the upstream's request, fallback on load failure and on queue wait, the
breaker opening on an upstream that keeps failing (no further connections while open), a wrong
key giving the upstream's 401 named clearly, and the key in no log line, reply or status."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import keyring
import keyring.backend
import keyring.backends.fail
import orjson
import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.engine.requests import GenerateRequest, Priority
from sidecar.errors import KeyringUnavailable
from sidecar.http.server import HttpServer, serve_http
from sidecar.models.defaults import CHAT_MODEL, EMBEDDING_MODEL
from sidecar.upstreams.breaker import Breaker
from sidecar.upstreams.keys import Keys
from sidecar.upstreams.router import Router
from sidecar.upstreams.settings import FallbackSettings, UpstreamSettings
from sidecar.usage.events import UsageEvent
from tests.helpers.http_server import Server, start_server, stop_server
from tests.helpers.lsp import start_lsp
from tests.helpers.prompts import chat_prompt
from tests.helpers.waiting import until

pytestmark = pytest.mark.asyncio(loop_scope="module")

CLUSTER_KEY = "sk-team-9f8e7d6c5b4a"  # the cluster's key: must appear in no log line
WRONG_KEY = "sk-wrong-1a2b3c4d5e6f"
EDITOR_KEY = CLUSTER_KEY  # what the editor hands over from SecretStorage
MESSAGES = [{"role": "user", "content": "Name three colors."}]
REMOTE_CHAT = f"team/{CHAT_MODEL}"


class RecordAll(logging.Handler):
    """Every log record of this process, whatever its level or logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text}")


@pytest.fixture(scope="module")
def records() -> Iterator[RecordAll]:
    handler = RecordAll()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)


class ClosingServer:
    """A TCP port that accepts and at once closes every connection: an upstream that keeps
    failing. Counts the connections it got."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.accepted = 0
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def free_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # nothing listens once closed


@pytest.fixture(scope="module")
def cluster(
    sidecar_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("cluster") / "stderr.log"
    server = start_server({**sidecar_env, "MLX_SIDECAR_API_KEY": CLUSTER_KEY}, log)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def dead() -> Iterator[ClosingServer]:
    server = ClosingServer()
    yield server
    server.close()


def upstream(url: str, env: str | None = None, **extra: Any) -> UpstreamSettings:
    return UpstreamSettings(base_url=url, api_key_env=env, **extra)


@pytest.fixture(scope="module")
def usage_events() -> list[UsageEvent]:
    return []


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def local(
    settings: Settings,
    cluster: Server,
    dead: ClosingServer,
    records: RecordAll,
    usage_events: list[UsageEvent],
    monkeypatch_module: pytest.MonkeyPatch,
) -> AsyncIterator[HttpServer]:
    """The laptop's sidecar: one batch slot, upstreams `team` (right key), `wrong` (wrong key),
    `dead` (closes every connection), `gone` (nothing listens); chat falls back to team."""
    monkeypatch_module.setenv("TEAM_KEY", CLUSTER_KEY)
    monkeypatch_module.setenv("WRONG_KEY", WRONG_KEY)
    local_settings = settings.model_copy(
        update={
            "max_batch": 1,
            "upstreams": {
                "team": upstream(f"{cluster.url}/v1", "TEAM_KEY"),
                "wrong": upstream(f"{cluster.url}/v1", "WRONG_KEY"),
                "dead": upstream(dead.url, retries=0, breaker_failures=2, breaker_open_s=600),
                "gone": upstream(free_port_url(), retries=2, retry_backoff_s=0.01),
            },
            "fallback": FallbackSettings(chat=REMOTE_CHAT, max_queue_wait_s=0.3),
        }
    )
    async with Engine(local_settings) as engine:
        router = Router(engine, local_settings, usage_events.append)
        http = await serve_http(engine, port=0, router=router)
        yield http
        await http.stop()
        await router.close()


def client_of(http: HttpServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"{http.url}/v1", timeout=120)


def cluster_client(cluster: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"{cluster.url}/v1",
        timeout=120,
        headers={"Authorization": f"Bearer {CLUSTER_KEY}"},
    )


async def sse_events(response: httpx.Response) -> list[dict[str, Any]]:
    events = []
    async for line in response.aiter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(orjson.loads(line[6:]))
    return events


def contents(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["choices"][0]["delta"].get("content", "")
        for e in events
        if e.get("choices") and "delta" in e["choices"][0]
    ]


async def test_models_lists_each_upstreams_models_beside_the_local_ones(local: HttpServer) -> None:
    async with client_of(local) as c:
        r = await c.get("/models")
    assert r.status_code == 200
    ids = [m["id"] for m in r.json()["data"]]
    assert CHAT_MODEL in ids  # local
    assert REMOTE_CHAT in ids and f"team/{EMBEDDING_MODEL}" in ids
    assert f"wrong/{CHAT_MODEL}" not in ids  # the cluster refused its key: listed as nothing
    entry = next(m for m in r.json()["data"] if m["id"] == REMOTE_CHAT)
    assert entry["owned_by"] == "team" and entry["upstream"] == "team"
    statuses = {s.name: s for s in local.app.state.router.statuses()}
    assert statuses["dead"].error and statuses["gone"].error  # reported, not raised
    assert statuses["team"].key_source == "env" and statuses["team"].error is None


async def test_a_streamed_chat_relays_the_upstreams_own_deltas(
    local: HttpServer, cluster: Server, usage_events: list[UsageEvent]
) -> None:
    body = {"messages": MESSAGES, "max_tokens": 12, "temperature": 0, "stream": True}
    direct_body = {**body, "model": CHAT_MODEL}
    async with (
        cluster_client(cluster) as c,
        c.stream("POST", "/chat/completions", json=direct_body) as r,
    ):
        assert r.status_code == 200
        direct = await sse_events(r)
    before = len(usage_events)
    routed_body = {**body, "model": REMOTE_CHAT}
    async with client_of(local) as c, c.stream("POST", "/chat/completions", json=routed_body) as r:
        assert r.status_code == 200
        assert r.headers["x-mlx-upstream"] == "team"
        assert "x-mlx-fallback" not in r.headers
        relayed = await sse_events(r)
    assert contents(relayed) == contents(direct)
    assert "".join(contents(relayed))  # it did say something
    assert all(e["x_served_by"] == "team" and e["model"] == REMOTE_CHAT for e in relayed)
    assert not any("usage" in e for e in relayed)  # asked of the upstream, not passed on
    event = usage_events[before]
    assert (event.upstream, event.model, event.endpoint, event.error) == (
        "team",
        REMOTE_CHAT,
        "chat",
        False,
    )
    assert 0 < event.completion_tokens <= 12  # the upstream's own count
    assert event.prompt_tokens > 0


async def test_chat_completions_and_embeddings_route_to_the_upstream(
    local: HttpServer, cluster: Server
) -> None:
    chat = {"messages": MESSAGES, "max_tokens": 6, "temperature": 0}
    text = {"prompt": "def add(a, b):", "max_tokens": 6, "temperature": 0}
    embed = {"input": ["hello world"]}
    async with cluster_client(cluster) as c:
        direct_chat = (await c.post("/chat/completions", json={**chat, "model": CHAT_MODEL})).json()
        direct_text = (await c.post("/completions", json={**text, "model": CHAT_MODEL})).json()
        direct_embed = (
            await c.post("/embeddings", json={**embed, "model": EMBEDDING_MODEL})
        ).json()
    async with client_of(local) as c:
        r_chat = await c.post("/chat/completions", json={**chat, "model": REMOTE_CHAT})
        r_text = await c.post("/completions", json={**text, "model": REMOTE_CHAT})
        r_embed = await c.post("/embeddings", json={**embed, "model": f"team/{EMBEDDING_MODEL}"})
    for r in (r_chat, r_text, r_embed):
        assert r.status_code == 200, r.text
        assert r.headers["x-mlx-upstream"] == "team" and r.json()["x_served_by"] == "team"
    assert r_chat.json()["choices"][0]["message"] == direct_chat["choices"][0]["message"]
    assert r_chat.json()["model"] == REMOTE_CHAT
    assert r_text.json()["choices"][0]["text"] == direct_text["choices"][0]["text"]
    assert r_embed.json()["data"][0]["embedding"] == direct_embed["data"][0]["embedding"]


async def test_a_client_that_leaves_cancels_the_upstreams_request(
    local: HttpServer, cluster: Server
) -> None:
    cancelled_before = (await cluster_status(cluster))["requests"].get("cancelled", 0)
    body = {
        "model": REMOTE_CHAT,
        "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
        "max_tokens": 2000,
        "stream": True,
    }
    async with client_of(local) as c, c.stream("POST", "/chat/completions", json=body) as r:
        async for line in r.aiter_lines():
            if '"content"' in line and '"content":""' not in line:
                break  # a token arrived: the upstream is decoding; now leave

    async def upstream_cancelled() -> bool:
        status = await cluster_status(cluster)
        return status["requests"].get("cancelled", 0) > cancelled_before and status["running"] == 0

    await until(upstream_cancelled, timeout=60, every=0.1)


async def test_chat_falls_back_to_the_upstream_when_the_local_queue_waits_too_long(
    local: HttpServer,
) -> None:
    engine = local.engine
    long = [{"role": "user", "content": "Write a very long story about a dragon."}]
    prompt = await chat_prompt(engine, long, CHAT_MODEL)

    async def run_local() -> None:
        request = GenerateRequest(prompt=prompt, model=CHAT_MODEL, max_tokens=2000)
        async for _ in engine.generate(request):
            pass

    running = asyncio.create_task(run_local())  # holds the one batch slot
    await until(lambda: engine.status().running == 1, timeout=60)
    waiting = asyncio.create_task(run_local())  # waits for it
    bound = local.app.state.router.fallback.max_queue_wait_s
    await until(lambda: engine.oldest_wait_s(Priority.CHAT) > bound, timeout=30)
    try:
        async with client_of(local) as c:
            r = await c.post(
                "/chat/completions", json={"messages": MESSAGES, "max_tokens": 4}
            )  # no model: the local chat model, whose queue is full
        assert r.status_code == 200, r.text
        assert r.headers["x-mlx-upstream"] == "team"
        assert r.headers["x-mlx-fallback"] == "queue_wait"
        assert r.json()["x_served_by"] == "team" and r.json()["model"] == REMOTE_CHAT
    finally:
        running.cancel()
        waiting.cancel()
        await asyncio.gather(running, waiting, return_exceptions=True)
    # with the queue empty again, the same request is the local engine's
    async with client_of(local) as c:
        r = await c.post("/chat/completions", json={"messages": MESSAGES, "max_tokens": 2})
    assert r.status_code == 200 and "x-mlx-upstream" not in r.headers
    assert r.json()["model"] == CHAT_MODEL and "x_served_by" not in r.json()


async def test_a_request_over_the_local_context_falls_back(local: HttpServer) -> None:
    """8,190 new tokens do not fit SmolLM2's 8,192-token context after the prompt: the request
    goes to the fallback, whose engine (the same model) refuses it with its own 400, named."""
    async with client_of(local) as c:
        fits = await c.post("/chat/completions", json={"messages": MESSAGES, "max_tokens": 2})
        over = await c.post("/chat/completions", json={"messages": MESSAGES, "max_tokens": 8190})
    assert fits.status_code == 200 and "x-mlx-upstream" not in fits.headers
    assert over.status_code == 400
    error = over.json()["error"]
    assert "upstream 'team'" in error["message"] and error["code"] == "context_length_exceeded"


async def test_a_wrong_key_gives_the_upstreams_401_naming_the_upstream(local: HttpServer) -> None:
    async with client_of(local) as c:
        r = await c.post(
            "/chat/completions",
            json={"model": f"wrong/{CHAT_MODEL}", "messages": MESSAGES, "max_tokens": 2},
        )
    assert r.status_code == 401
    error = r.json()["error"]
    assert "upstream 'wrong'" in error["message"] and "401" in error["message"]
    assert "API key" in error["message"]
    assert WRONG_KEY not in r.text and CLUSTER_KEY not in r.text


async def test_the_responses_and_messages_apis_say_upstream_models_are_not_theirs(
    local: HttpServer,
) -> None:
    async with client_of(local) as c:
        r = await c.post("/responses", json={"model": REMOTE_CHAT, "input": "Hi"})
        m = await c.post(
            "/messages", json={"model": REMOTE_CHAT, "max_tokens": 2, "messages": MESSAGES}
        )
    assert r.status_code == 400 and r.json()["error"]["code"] == "upstream_not_supported"
    assert m.status_code == 400 and m.json()["type"] == "error"
    assert "upstream 'team'" in m.json()["error"]["message"]


async def test_an_upstream_that_keeps_failing_opens_the_breaker(
    local: HttpServer, dead: ClosingServer
) -> None:
    body = {"model": "dead/anything", "messages": MESSAGES, "max_tokens": 2}
    async with client_of(local) as c:
        accepted = dead.accepted  # the model listing may have connected already
        breaker = local.app.state.router.upstreams["dead"].breaker
        failures = []
        while breaker.state() == "closed":
            r = await c.post("/chat/completions", json=body)
            failures.append(r)
            assert len(failures) <= 2
        assert all(r.status_code == 502 and "upstream 'dead'" in r.text for r in failures)
        connected = dead.accepted
        assert connected > accepted
        for _ in range(3):
            r = await c.post("/chat/completions", json=body)
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "upstream_circuit_open"
            assert "upstream 'dead'" in r.json()["error"]["message"]
        assert dead.accepted == connected  # no connection while open


async def test_a_refused_connection_is_retried_then_named(local: HttpServer) -> None:
    async with client_of(local) as c:
        r = await c.post(
            "/chat/completions", json={"model": "gone/x", "messages": MESSAGES, "max_tokens": 2}
        )
    assert r.status_code == 503
    assert "upstream 'gone'" in r.json()["error"]["message"]
    assert "cannot connect" in r.json()["error"]["message"]


async def test_the_breaker_lets_one_probe_through_after_its_open_time() -> None:
    breaker = Breaker(failures=2, open_s=0.05)
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert not breaker.allow()
    import time

    deadline = time.monotonic() + 5
    while breaker.state() == "open" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one
    breaker.failure()  # the probe failed: open again
    assert breaker.state() == "open"
    while breaker.state() == "open" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert breaker.allow()
    breaker.success()
    assert breaker.state() == "closed" and breaker.allow()


class MemoryKeyring(keyring.backend.KeyringBackend):
    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.kept: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.kept.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.kept[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.kept.pop((service, username), None)


async def test_keys_come_from_the_editor_the_environment_or_the_keyring(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = Keys()
    settings = upstream("http://x/v1", "SOME_KEY", api_key_keyring="mlx-sidecar/team")
    previous = keyring.get_keyring()
    try:
        keyring.set_keyring(keyring.backends.fail.Keyring())
        monkeypatch.delenv("SOME_KEY", raising=False)
        with pytest.raises(KeyringUnavailable, match="no keyring backend"):
            keys.get("team", settings)  # said, not sent without a key
        backend = MemoryKeyring()
        backend.set_password("mlx-sidecar", "team", "from-keyring")
        keyring.set_keyring(backend)
        assert keys.get("team", settings).get_secret_value() == "from-keyring"  # type: ignore[union-attr]
        monkeypatch.setenv("SOME_KEY", "from-env")
        assert keys.get("team", settings).get_secret_value() == "from-env"  # type: ignore[union-attr]
        keys.set("team", "from-editor")
        assert keys.get("team", settings).get_secret_value() == "from-editor"  # type: ignore[union-attr]
        assert keys.source("team", settings) == "editor"
        assert "from-editor" not in repr(keys)
    finally:
        keyring.set_keyring(previous)


@pytest.fixture(scope="module")
def starved(
    sidecar_env: dict[str, str], cluster: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A sidecar subprocess whose memory budget loads no model, chat falling back to team."""
    log = tmp_path_factory.mktemp("starved") / "stderr.log"
    env = {
        **sidecar_env,
        "MLX_SIDECAR_MEMORY_BUDGET_BYTES": "1024",
        "MLX_SIDECAR_UPSTREAMS__TEAM__BASE_URL": f"{cluster.url}/v1",
        "MLX_SIDECAR_UPSTREAMS__TEAM__API_KEY_ENV": "TEAM_KEY",
        "TEAM_KEY": CLUSTER_KEY,
        "MLX_SIDECAR_FALLBACK__CHAT": REMOTE_CHAT,
    }
    server = start_server(env, log, global_args=("--log-level", "debug"))
    yield server
    stop_server(server)


async def test_chat_falls_back_when_the_local_model_cannot_load(starved: Server) -> None:
    async with httpx.AsyncClient(base_url=f"{starved.url}/v1", timeout=120) as c:
        r = await c.post("/chat/completions", json={"messages": MESSAGES, "max_tokens": 4})
        assert r.status_code == 200, r.text
        assert r.headers["x-mlx-fallback"] == "load_failed"
        assert r.json()["x_served_by"] == "team"
        # no fallback for embeddings: the local error, as before
        r = await c.post("/embeddings", json={"input": ["hi"]})
        assert r.status_code == 503 and "memory" in r.json()["error"]["message"]
    assert CLUSTER_KEY not in starved.log.read_text()  # its stderr at DEBUG


async def editor_client(env: dict[str, str]) -> LanguageClient:
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "sidecar", "--log-level", "debug", "stdio"],
        server_env=env,
    )
    client = await start_lsp(config)
    await client.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities()))
    return client


async def cluster_status(cluster: Server) -> dict[str, Any]:
    async with cluster_client(cluster) as c:
        return (await c.get(f"{cluster.url}/health")).json()


async def test_the_editor_adds_an_endpoint_and_hands_over_its_key(
    sidecar_env: dict[str, str], cluster: Server, capfd: pytest.CaptureFixture[str]
) -> None:
    quiet = logging.getLogger("pygls")  # this test's own client logs what it sends (the key)
    old_level = quiet.level
    quiet.setLevel(logging.WARNING)
    client = await editor_client(sidecar_env)
    deltas: list[Any] = []
    client.feature("mlx/chat/delta")(lambda params: deltas.append(params))

    async def call(method: str, params: Any) -> Any:
        return await asyncio.wait_for(client.protocol.send_request_async(method, params), 120)

    try:
        added = await call("mlx/upstreams/add", {"name": "team", "baseUrl": f"{cluster.url}/v1"})
        assert added.upstreams[0].key_source == "none"
        chat = {"model": REMOTE_CHAT, "messages": MESSAGES, "maxTokens": 6, "streamToken": "s1"}
        with pytest.raises(JsonRpcException) as refused:  # no key yet: the cluster's 401
            await call("mlx/chat", chat)
        assert "upstream 'team'" in str(refused.value) and "401" in str(refused.value)
        status = await call("mlx/upstreams/setKey", {"upstream": "team", "key": EDITOR_KEY})
        assert status.upstreams[0].key_source == "editor"
        assert EDITOR_KEY not in repr(status)
        listed = await call("mlx/models/list", {})
        remote = [m.id for m in listed.remote if m.upstream == "team"]
        assert REMOTE_CHAT in remote and CHAT_MODEL in [m.id for m in listed.models]
        reply = await call("mlx/chat", chat)
        assert reply.served_by == "team" and reply.model == REMOTE_CHAT and reply.text
        editor_status = await call("mlx/status", {})
        assert [u.name for u in editor_status.upstreams] == ["team"]
        assert editor_status.upstreams[0].breaker == "closed"
        assert EDITOR_KEY not in repr(editor_status)
        assert "".join(d.delta for d in deltas if d.stream_token == "s1") == reply.text
        # the editor picks the remote model for chat: requests naming no model go there
        selected = await call("mlx/models/select", {"role": "chat", "model": REMOTE_CHAT})
        assert selected.roles.chat == REMOTE_CHAT
        reply = await call("mlx/chat", {"messages": MESSAGES, "maxTokens": 4})
        assert reply.served_by == "team" and reply.fallback_reason is None
        with pytest.raises(JsonRpcException) as local_only:
            await call("mlx/models/select", {"role": "completion", "model": REMOTE_CHAT})
        assert "inline completion runs on local models" in str(local_only.value)
        with pytest.raises(JsonRpcException) as unknown:
            await call("mlx/upstreams/setKey", {"upstream": "nope", "key": EDITOR_KEY})
        assert EDITOR_KEY not in str(unknown.value)

        # $/cancelRequest closes the upstream request: the cluster's engine cancels it
        cancelled_before = (await cluster_status(cluster))["requests"].get("cancelled", 0)
        long = {
            "model": REMOTE_CHAT,
            "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
            "maxTokens": 2000,
            "streamToken": "s2",
        }
        future = client.protocol.send_request("mlx/chat", long, msg_id="remote-cancel")
        await until(lambda: any(d.stream_token == "s2" for d in deltas), timeout=60)
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="remote-cancel"))
        with pytest.raises(JsonRpcException) as info:
            await asyncio.wait_for(asyncio.wrap_future(future), 30)
        assert info.value.code == -32800

        async def upstream_cancelled() -> bool:
            status = await cluster_status(cluster)
            cancelled = status["requests"].get("cancelled", 0)
            return cancelled > cancelled_before and status["running"] == 0

        await until(upstream_cancelled, timeout=30, every=0.1)
    finally:
        await client.shutdown_session()
        await client.stop()
        quiet.setLevel(old_level)
    stderr = capfd.readouterr().err  # the stdio server's own log, at DEBUG
    assert "mlx/upstreams/setKey" in stderr or "upstream team" in stderr  # it did log
    assert EDITOR_KEY not in stderr


async def test_no_log_line_holds_a_key(records: RecordAll, local: HttpServer) -> None:
    """Every record made at DEBUG (httpx, httpcore, uvicorn, the router) holds neither key: the
    test sends a key each way itself (a chat through `team`, the `wrong` key's 401), so it
    needs no other test to have run first; the records of any that did are checked too."""
    before = len(records.lines)
    async with client_of(local) as c:
        ok = await c.post(
            "/chat/completions", json={"model": REMOTE_CHAT, "messages": MESSAGES, "max_tokens": 2}
        )
        refused = await c.post(
            "/chat/completions",
            json={"model": f"wrong/{CHAT_MODEL}", "messages": MESSAGES, "max_tokens": 2},
        )
    assert (ok.status_code, refused.status_code) == (200, 401), (ok.text, refused.text)
    assert any(line.startswith("httpx") for line in records.lines[before:])  # DEBUG was on
    for line in records.lines:
        assert CLUSTER_KEY not in line and WRONG_KEY not in line, line
    assert CLUSTER_KEY not in repr(local.app.state.router.keys)
    assert CLUSTER_KEY not in repr(local.app.state.router.statuses())

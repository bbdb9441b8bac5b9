"""One sidecar per machine: editor clients (`mlx-sidecar stdio --attach`, real LSP clients) share
one daemon and one copy of each model; each has its own session; the daemon exits a grace period
after the last one left; one daemon however many start at once; a killed daemon gives its
clients a clear error and the next start brings service back; the token is checked; a stale
socket is replaced. Real subprocesses, real SmolLM2; each test has its own runtime dir."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from sidecar.benchmarks.soak import rss_of
from sidecar.models.defaults import CHAT_MODEL, EMBEDDING_MODEL
from tests.helpers.lsp import start_lsp
from tests.helpers.waiting import until

pytestmark = pytest.mark.asyncio(loop_scope="module")

URI = "file:///workspace/shop.py"
BUFFER = "def add(a: int, b: int) -> int:\n    return \n"
CURSOR = types.Position(line=1, character=11)
GRACE_S = 1.0
MIB = 1 << 20


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    # Short, under /tmp: a Unix socket path has ~104 bytes at most.
    with tempfile.TemporaryDirectory(prefix="mlxd-", dir="/tmp") as d:
        path = Path(d) / "run"
        yield path
        stop_daemon(path)


@pytest.fixture
def env(sidecar_env: dict[str, str], runtime_dir: Path) -> dict[str, str]:
    return {
        **sidecar_env,
        "MLX_SIDECAR_DAEMON_RUNTIME_DIR": str(runtime_dir),
        "MLX_SIDECAR_DAEMON_GRACE_S": str(GRACE_S),
    }


def daemon_pid(runtime_dir: Path) -> int | None:
    try:
        return int((runtime_dir / "daemon.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has exited
        return f.read().split(") ", 1)[1][0] != "Z"


def stop_daemon(runtime_dir: Path) -> None:
    pid = daemon_pid(runtime_dir)
    if pid is not None and alive(pid):
        os.kill(pid, signal.SIGKILL)


async def attach(env: dict[str, str]) -> LanguageClient:
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "sidecar", "stdio", "--attach"], server_env=env
    )
    client = await start_lsp(config)
    deltas: list[Any] = []
    client.deltas = deltas  # type: ignore[attr-defined]
    client.feature("mlx/chat/delta")(lambda params: deltas.append(params))
    changes: list[Any] = []
    client.changes = changes  # type: ignore[attr-defined]
    client.feature("mlx/models/changed")(lambda params: changes.append(params))
    await asyncio.wait_for(
        client.initialize_session(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                initialization_options={"completion": {"maxTokens": 4, "maxTimeMs": 60000}},
            )
        ),
        120,
    )
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=URI, language_id="python", version=1, text=BUFFER
            )
        )
    )
    return client


async def call(client: LanguageClient, method: str, params: Any = None) -> Any:
    return await asyncio.wait_for(client.protocol.send_request_async(method, params), 120)


async def chat(client: LanguageClient, text: str = "Hi", max_tokens: int = 3, **extra: Any) -> Any:
    params = {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens, **extra}
    return await call(client, "mlx/chat", params)


async def complete(client: LanguageClient) -> types.InlineCompletionList | None:
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI),
        position=CURSOR,
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Automatic
        ),
    )
    result = await asyncio.wait_for(client.text_document_inline_completion_async(params), 120)
    assert isinstance(result, types.InlineCompletionList)
    return result


async def leave(client: LanguageClient) -> None:
    await client.shutdown_session()
    await client.stop()


async def exit_code(client: LanguageClient, timeout: float = 30) -> int:
    assert client._server is not None
    return await asyncio.wait_for(client._server.wait(), timeout)


def loaded_copies(status: Any, model: str) -> int:
    return sum(1 for m in status.loaded if m.id == model)


async def test_two_windows_share_one_daemon_and_one_model(
    env: dict[str, str], runtime_dir: Path
) -> None:
    first = await attach(env)
    second: LanguageClient | None = None
    try:
        reply = await chat(first)
        assert reply.usage.completion_tokens >= 1
        assert (await complete(first)) is not None
        pid = daemon_pid(runtime_dir)
        assert pid is not None and alive(pid)
        status = await call(first, "mlx/status")
        assert loaded_copies(status, CHAT_MODEL) == 1
        model_bytes = next(m.size_bytes for m in status.loaded if m.id == CHAT_MODEL)
        rss_one = rss_of(pid) or 0

        second = await attach(env)
        assert (await chat(second, "Hello")).text is not None
        assert (await complete(second)) is not None
        assert daemon_pid(runtime_dir) == pid  # attached, not a second daemon
        rss_two = rss_of(pid) or 0
        for client in (first, second):
            status = await call(client, "mlx/status")
            assert loaded_copies(status, CHAT_MODEL) == 1
        # A second copy of the weights would add model_bytes; a session adds far less.
        print(
            f"\ndaemon RSS: one client {rss_one / MIB:.0f} MiB, two {rss_two / MIB:.0f} MiB "
            f"(+{(rss_two - rss_one) / MIB:.1f} MiB); model {model_bytes / MIB:.0f} MiB"
        )
        assert rss_two - rss_one < model_bytes / 2

        # What changes the shared engine is told to every window.
        await call(first, "mlx/models/load", {"model": EMBEDDING_MODEL})
        changes: list[Any] = second.changes  # type: ignore[attr-defined]
        await until(lambda: any(c.reason == "loaded" for c in changes), timeout=30)

        # Sessions are separate: the first one's documents are not the second's.
        status = await call(first, "mlx/status")
        assert status.open_documents == 1

        await leave(first)
        assert await exit_code(first) == 0
        first = None  # type: ignore[assignment]
        assert (await chat(second, "Still there?")).text is not None  # the engine kept going
        assert daemon_pid(runtime_dir) == pid

        await leave(second)
        second = None
        # The last lease left: the daemon exits after the grace period and cleans up.
        await until(lambda: not alive(pid), timeout=GRACE_S + 30)
        assert not (runtime_dir / "sidecar.sock").exists()
    finally:
        for leftover in (first, second):
            if leftover is not None:
                await leftover.stop()


def start_daemon(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sidecar", "daemon"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_simultaneous_starts_give_one_daemon(env: dict[str, str], runtime_dir: Path) -> None:
    # Long grace: the survivor must still be there when the others have exited.
    procs = [start_daemon({**env, "MLX_SIDECAR_DAEMON_GRACE_S": "60"}) for _ in range(3)]
    try:
        await until(lambda: sum(p.poll() is None for p in procs) <= 1, timeout=120)
        await asyncio.sleep(0)
        running = [p for p in procs if p.poll() is None]
        assert len(running) == 1
        exited = [p for p in procs if p.poll() is not None]
        for p in exited:
            assert p.returncode == 0
            assert "already running" in p.communicate()[1]
        await until(lambda: daemon_pid(runtime_dir) == running[0].pid, timeout=60)
        running[0].send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(running[0].wait, 30) == 0
        assert not (runtime_dir / "sidecar.sock").exists()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


async def test_killed_daemon_gives_a_clear_error_and_a_restart_serves_again(
    env: dict[str, str], runtime_dir: Path
) -> None:
    client = await attach(env)
    try:
        pid = daemon_pid(runtime_dir)
        assert pid is not None
        deltas: list[Any] = client.deltas  # type: ignore[attr-defined]
        reply = asyncio.ensure_future(chat(client, "Count to fifty.", 400, stream_token="s"))
        await until(lambda: len(deltas) > 0, timeout=120)  # the chat is running
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(JsonRpcException) as caught:
            await asyncio.wait_for(reply, 30)
        assert caught.value.code == -32001
        assert "daemon" in str(caught.value.message)
        await until(lambda: bool(client.messages), timeout=10)
        assert "daemon" in client.messages[-1].message
        assert await exit_code(client) == 1
    finally:
        await client.stop()

    # What the editors' restarts do, two windows at the same instant: they end with one daemon.
    windows = await asyncio.gather(attach(env), attach(env))
    try:
        new_pid = daemon_pid(runtime_dir)
        assert new_pid not in (None, pid)
        for window in windows:
            assert (await chat(window)).text is not None
        daemons = [p for p in os.listdir("/proc") if p.isdigit() and is_daemon(int(p), runtime_dir)]
        assert daemons == [str(new_pid)]
    finally:
        for window in windows:
            await leave(window)


def is_daemon(pid: int, runtime_dir: Path) -> bool:
    """A `mlx-sidecar daemon` process of this test's runtime dir."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return b"daemon" in cmdline and str(runtime_dir).encode() in environ and alive(pid)


def handshake(runtime_dir: Path, line: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(runtime_dir / "sidecar.sock"))
        s.sendall(line)
        return s.makefile("rb").readline()


async def test_the_token_is_checked_and_a_stale_socket_is_replaced(
    env: dict[str, str], runtime_dir: Path
) -> None:
    # A socket file nobody listens on: what a daemon killed with -9 leaves behind.
    runtime_dir.mkdir(mode=0o700, parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(runtime_dir / "sidecar.sock"))
    stale.close()
    with pytest.raises(ConnectionRefusedError):
        handshake(runtime_dir, b"\n")

    client = await attach(env)  # replaces it
    try:
        assert oct((runtime_dir).stat().st_mode & 0o777) == "0o700"
        assert oct((runtime_dir / "token").stat().st_mode & 0o777) == "0o600"
        wrong = await asyncio.to_thread(handshake, runtime_dir, b"0123456789abcdef\n")
        assert wrong.startswith(b"error: wrong token")
        missing = await asyncio.to_thread(handshake, runtime_dir, b"\n")
        assert missing.startswith(b"error: missing token")
        token = (runtime_dir / "token").read_text().strip().encode()
        assert await asyncio.to_thread(handshake, runtime_dir, token + b"\n") == b"ok\n"
        status = await call(client, "mlx/status")  # refused clients did not disturb anyone
        assert status.running == 0
    finally:
        await leave(client)


async def test_one_openai_port_for_every_window(env: dict[str, str], runtime_dir: Path) -> None:
    first = await attach({**env, "MLX_SIDECAR_HTTP_PORT": "0"})  # the daemon opens it
    second = await attach(env)
    try:
        url_first = (await call(first, "mlx/status")).http_url
        url_second = (await call(second, "mlx/status")).http_url
        assert url_first and url_first.startswith("http://127.0.0.1:")
        assert url_second == url_first
    finally:
        await leave(first)
        await leave(second)


async def test_a_window_that_vanishes_frees_its_work_for_the_others(
    env: dict[str, str], runtime_dir: Path
) -> None:
    gone = await attach(env)
    stays = await attach(env)
    try:
        deltas: list[Any] = gone.deltas  # type: ignore[attr-defined]
        reply = asyncio.ensure_future(chat(gone, "Count to fifty.", 400, stream_token="s"))
        await until(lambda: len(deltas) > 0, timeout=120)
        before = await call(stays, "mlx/status")
        assert before.running == 1  # the other window's chat
        cancelled = getattr(before.requests, "cancelled", 0)
        assert gone._server is not None
        gone._server.kill()  # the window dies: no shutdown, no exit, no cancel
        reply.cancel()  # nobody waits for that answer any more

        async def freed() -> bool:
            return (await call(stays, "mlx/status")).running == 0

        await until(freed, timeout=30)  # its stream was cancelled, not run to 400 tokens
        after = await call(stays, "mlx/status")
        assert getattr(after.requests, "cancelled", 0) == cancelled + 1
        assert (await chat(stays)).text is not None
    finally:
        await gone.stop()
        await leave(stays)

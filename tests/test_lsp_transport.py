"""The JSON-RPC transport of `mlx-sidecar stdio`, driven with raw bytes: a bad frame is answered
(-32700 / -32600, id null where unknown) and the session goes on; typed params that do not
convert get -32602 with the id; requests before `initialize` get -32002; a fuzz of every
method the server registers gets an answer to every request. One server per module (plus one
that is never initialized); the real default models, tiny prompts and max_tokens."""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.lsp.transport import FrameError, Framer
from sidecar.models.defaults import CHAT_MODEL, EMBEDDING_MODEL

URI = "file:///workspace/fuzz.py"
TIMEOUT_S = 120.0


def frame(body: bytes, length: int | None = None) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length) + body


def encode(message: dict[str, Any]) -> bytes:
    return frame(json.dumps(message).encode())


class RawSession:
    """`python -m sidecar stdio` with raw bytes in and parsed frames out."""

    def __init__(self, env: dict[str, str]) -> None:
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "stdio"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
        )
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.responses: dict[Any, dict[str, Any]] = {}
        self.null_id: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = None
            while (line := out.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if not line or length is None:
                self.inbox.put(None)
                return
            self.inbox.put(json.loads(out.read(length)))

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        with self.lock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def request(self, method: str, params: Any = None) -> int:
        rid = next(self.ids)
        message = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        self.send(encode(message))
        return rid

    def notify(self, method: str, params: Any = None) -> None:
        message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(encode(message))

    def _pump(self, deadline: float) -> None:
        try:
            message = self.inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            return
        if message is None:
            raise AssertionError(f"the server closed stdout:\n{self.stderr_tail()}")
        if "method" in message and "id" in message:  # a request to the client: say yes
            self.send(encode({"jsonrpc": "2.0", "id": message["id"], "result": None}))
        elif "method" in message:
            self.notifications.append(message)
        elif message.get("id") is None:
            self.null_id.append(message)
        else:
            self.responses[message["id"]] = message

    def response(self, rid: Any, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while rid not in self.responses:
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer to {rid!r}:\n{self.stderr_tail()}")
            self._pump(deadline)
        return self.responses.pop(rid)

    def null_id_error(self, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self.null_id:
            if time.monotonic() > deadline:
                raise AssertionError(f"no error with a null id:\n{self.stderr_tail()}")
            self._pump(deadline)
        return self.null_id.pop(0)["error"]

    def call(self, method: str, params: Any = None) -> dict[str, Any]:
        return self.response(self.request(method, params))

    def initialize(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        params = {"processId": None, "capabilities": {}, "initializationOptions": options or {}}
        result = self.call("initialize", params)
        self.notify("initialized", {})
        return result

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-4000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.response(self.request("shutdown"), timeout=30)
                self.notify("exit")
                self.proc.wait(15)
            except (AssertionError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


@pytest.fixture(scope="module")
def fuzz_env(sidecar_env: dict[str, str], models_dir: Path) -> Iterator[dict[str, str]]:
    """The test models seen through links: the store refuses to delete anything outside its
    directory, so no fuzzed `mlx/models/delete` can remove the shared test models."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in (CHAT_MODEL, EMBEDDING_MODEL):
            os.symlink(models_dir / name, Path(tmp) / name)
        yield {**sidecar_env, "MLX_SIDECAR_MODELS_DIR": tmp}


@pytest.fixture(scope="module")
def server(fuzz_env: dict[str, str]) -> Iterator[RawSession]:
    session = RawSession(fuzz_env)
    session.initialize({"completion": {"maxTokens": 2, "maxTimeMs": 60000}})
    session.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": "x = 1\n"}},
    )
    yield session
    session.close()


def assert_status(session: RawSession) -> None:
    assert "running" in session.call("mlx/status")["result"]


def test_short_content_length_is_answered_and_the_next_request_served(
    server: RawSession,
) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 9001, "method": "mlx/status"}).encode()
    server.send(frame(body, len(body) - 10))
    rid = server.request("mlx/status")
    assert server.null_id_error()["code"] == -32700
    assert "running" in server.response(rid)["result"]


def test_long_content_length_does_not_swallow_the_next_request(server: RawSession) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 9002, "method": "mlx/status"}).encode()
    server.send(frame(body, len(body) + 10))
    rid = server.request("mlx/status")
    assert server.null_id_error()["code"] == -32700
    assert "running" in server.response(rid)["result"]


def test_absurd_content_length_is_refused_and_the_session_goes_on(server: RawSession) -> None:
    server.send(b"Content-Length: 99999999999999\r\n\r\n" + b'{"jsonrpc": "2.0", "id": 9003, ')
    error = server.null_id_error()
    assert error["code"] == -32600 and "99999999999999" in error["message"]
    assert_status(server)


def test_invalid_json_gets_a_parse_error(server: RawSession) -> None:
    server.send(frame(b'{"jsonrpc": "2.0", "id": 9004, "method": mlx/status}'))
    error = server.null_id_error()
    assert error["code"] == -32700 and "parse error" in error["message"]
    assert_status(server)


def test_messages_that_are_not_requests_get_invalid_request(server: RawSession) -> None:
    server.send(frame(b"[1, 2]"))
    assert server.null_id_error()["code"] == -32600
    server.send(encode({"jsonrpc": "1.0", "id": 9005, "method": "mlx/status"}))
    assert server.response(9005)["error"]["code"] == -32600
    server.send(encode({"jsonrpc": "2.0", "id": 9006, "method": 5}))
    assert server.response(9006)["error"]["code"] == -32600
    server.send(encode({"jsonrpc": "2.0", "id": [1], "method": "mlx/status"}))
    assert server.null_id_error()["code"] == -32600
    assert_status(server)


def test_typed_method_with_bad_params_gets_invalid_params(server: RawSession) -> None:
    rid = server.request("textDocument/inlineCompletion", {"textDocument": 5})
    error = server.response(rid)["error"]
    assert error["code"] == -32602
    assert "textDocument/inlineCompletion" in error["message"] and "params" in error["message"]
    assert_status(server)


def test_second_initialize_is_refused(server: RawSession) -> None:
    error = server.call("initialize", {"processId": None, "capabilities": {}})["error"]
    assert error["code"] == -32600


def test_requests_before_initialize_get_server_not_initialized(
    sidecar_env: dict[str, str],
) -> None:
    session = RawSession(sidecar_env)
    try:
        error = session.call("mlx/status")["error"]
        assert error["code"] == -32002
        session.notify(  # dropped: a notification before initialize
            "textDocument/didOpen",
            {"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": ""}},
        )
        assert "capabilities" in session.initialize()["result"]
        assert session.call("mlx/status")["result"]["open_documents"] == 0
    finally:
        session.close()


# -- the framer alone (no server): any bytes, any chunking ----------------------------------

messages = st.lists(
    st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": st.integers(0, 10**6)}),
    min_size=1,
    max_size=5,
)
junk = st.binary(max_size=40).filter(lambda b: b"content-length" not in b.lower())


@settings(max_examples=200, deadline=None)
@given(messages, st.lists(junk, min_size=6, max_size=6), st.integers(1, 64))
def test_framer_finds_every_frame_after_junk(
    bodies: list[dict[str, Any]], gaps: list[bytes], chunk: int
) -> None:
    stream = b"".join(gap + encode(m) for gap, m in zip(gaps, bodies, strict=False))
    framer = Framer(1 << 20)
    out = []
    for i in range(0, len(stream), chunk):
        out += framer.feed(stream[i : i + chunk])
    assert [m for m in out if not isinstance(m, FrameError)] == bodies


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 64))
def test_framer_survives_any_bytes(data: bytes, chunk: int) -> None:
    framer = Framer(100)
    for i in range(0, len(data), chunk):
        framer.feed(data[i : i + chunk])
    last = {"jsonrpc": "2.0", "id": 1}
    assert last in framer.feed(b"\r\n\r\n" + encode(last))


def test_framer_keeps_a_null_body_and_what_follows() -> None:
    message = {"jsonrpc": "2.0", "id": 1}
    assert Framer(100).feed(frame(b"null") + encode(message)) == [None, message]


def test_framer_refuses_a_length_of_many_digits() -> None:
    (error,) = Framer(100).feed(b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n")
    assert error.code == -32600


# -- fuzz: every method the server registers (sidecar/lsp/server.py, downloads.py) ----------

leaf = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=12)
json_values = st.recursive(
    leaf | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def mostly(good: Any) -> Any:
    """`good` seven times in eight, anything at all otherwise."""
    return st.sampled_from([good] * 7 + [json_values]).flatmap(lambda strategy: strategy)


def shaped(required: dict[str, Any], optional: dict[str, Any] | None = None) -> Any:
    return mostly(st.fixed_dictionaries(required, optional=optional or {}))


model_ids = mostly(st.sampled_from([CHAT_MODEL, EMBEDDING_MODEL]) | st.text(max_size=12))
short_text = mostly(st.text(max_size=16))
text_document = shaped(
    {"uri": mostly(st.sampled_from([URI, "file:///nowhere.py"]))},
    {"version": mostly(st.integers(-1, 9))},
)
position = shaped({"line": mostly(st.integers(-2, 3)), "character": mostly(st.integers(-2, 40))})
message = shaped(
    {"role": mostly(st.sampled_from(["user", "system", "assistant", ""])), "content": short_text}
)
REQUESTS: dict[str, Any] = {
    "mlx/chat": shaped(
        {"messages": mostly(st.lists(message, min_size=1, max_size=2))},
        {
            "model": model_ids,
            "temperature": mostly(st.floats(-1, 3)),
            "top_p": mostly(st.floats(-1, 2)),
            "stop": mostly(st.lists(st.text(max_size=4), max_size=2)),
            "stream_token": mostly(st.text(max_size=4) | st.integers()),
            "seed": mostly(st.integers()),
        },
    ),
    "mlx/embed": shaped(
        {"input": mostly(st.lists(st.text(max_size=12), min_size=1, max_size=2))},
        {"model": model_ids},
    ),
    "mlx/models/list": json_values,
    "mlx/models/load": shaped({"model": model_ids}, {"pin": mostly(st.booleans())}),
    "mlx/models/unload": shaped({"model": model_ids}),
    "mlx/models/select": shaped(
        {
            "role": mostly(st.sampled_from(["chat", "completion", "embedding", "x"])),
            "model": model_ids,
        }
    ),
    "mlx/status": json_values,
    "mlx/models/search": shaped({"query": short_text}, {"limit": mostly(st.integers(-1, 3))}),
    "mlx/models/download": shaped({"repo": short_text}),
    "mlx/models/delete": shaped({"id": short_text}),
    "textDocument/inlineCompletion": shaped(
        {
            "textDocument": text_document,
            "position": position,
            "context": shaped({"triggerKind": mostly(st.sampled_from([1, 2]))}),
        }
    ),
    "initialize": shaped({"capabilities": mostly(st.just({}))}, {"processId": json_values}),
    "no/such/method": json_values,
}
NOTIFICATIONS: dict[str, Any] = {
    "textDocument/didOpen": shaped(
        {
            "textDocument": shaped(
                {
                    "uri": mostly(st.just(URI)),
                    "languageId": mostly(st.just("python")),
                    "version": mostly(st.integers(0, 9)),
                    "text": mostly(st.text(max_size=40)),
                }
            )
        }
    ),
    "textDocument/didChange": shaped(
        {
            "textDocument": text_document,
            "contentChanges": mostly(
                st.lists(st.fixed_dictionaries({"text": st.text(max_size=20)}), max_size=2)
            ),
        }
    ),
    "workspace/didChangeConfiguration": shaped({"settings": json_values}),
    "$/cancelRequest": shaped({"id": json_values}),
}


def tiny(method: str, params: Any) -> Any:
    """Generation stays one token long, whatever the fuzz drew."""
    if method == "mlx/chat" and isinstance(params, dict):
        params = {k: v for k, v in params.items() if k not in ("maxTokens", "max_tokens")}
        params["max_tokens"] = 1
    return params


def no_traceback(error: dict[str, Any]) -> None:
    text = json.dumps(error)
    assert "Traceback" not in text and 'File "' not in text, error


calls = st.one_of(
    *(st.tuples(st.just(m), s) for m, s in REQUESTS.items()),
    *(st.tuples(st.just(m), s) for m, s in NOTIFICATIONS.items()),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(calls, min_size=1, max_size=3))
def test_fuzz_every_request_gets_an_answer(
    server: RawSession, batch: list[tuple[str, Any]]
) -> None:
    sent: list[str | int] = []
    for method, params in batch:
        params = tiny(method, params)
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        if method in REQUESTS:
            message["id"] = fuzz_id = f"fuzz-{next(server.ids)}"
            sent.append(fuzz_id)
        server.send(encode(message))
    sent.append(server.request("mlx/status"))  # also after notifications: still serving
    for rid in sent:
        reply = server.response(rid)
        assert ("result" in reply) != ("error" in reply), reply
        if "error" in reply:
            no_traceback(reply["error"])
    for error in server.null_id:
        no_traceback(error["error"])
    assert_status(server)

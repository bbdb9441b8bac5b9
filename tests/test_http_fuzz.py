"""Fuzzing the OpenAI port on the real default models (one `serve` subprocess for the module):
hypothesis-made bodies for every route, then schemathesis cases from `/openapi.json`. Whatever
comes in: no 5xx, no hang (each request has a deadline), no traceback in a body or in the
server's log, an OpenAI error body on every error, and the server healthy after each batch.

Generation stays cheap: every body's `max_tokens` is forced to 1, texts are short, and each
batch has a small `max_examples` (the module runs in a few tens of seconds on 2 CPU cores)."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Ok

from sidecar.models.defaults import CHAT_MODEL, EMBEDDING_MODEL
from tests.helpers.http_server import Server, start_server, stop_server

REQUEST_TIMEOUT_S = 60  # far above any 1-token request here: reaching it means a hang
FUZZ = settings(
    max_examples=12,
    deadline=None,
    database=None,  # the same cases every run, not ones remembered from earlier runs
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def server(
    sidecar_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    srv = start_server(sidecar_env, tmp_path_factory.mktemp("fuzz") / "server.log")
    yield srv
    stop_server(srv)
    assert "Traceback" not in srv.log.read_text()


def cheap(body: Any) -> Any:
    """The body with generation forced down to one token."""
    if not isinstance(body, dict):
        return body
    body = {**body, "max_tokens": 1, "max_output_tokens": 1}  # extra keys are ignored
    body.pop("max_completion_tokens", None)
    return body


def send(
    server: Server, method: str, path: str, body: bytes | None, media: str
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=REQUEST_TIMEOUT_S)
    try:
        headers = {"Content-Type": media} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def check(status: int, raw: bytes, path: str = "") -> None:
    """No 5xx, no traceback, and an error body in the path's API shape."""
    assert status < 500, raw[:500]
    assert b"Traceback" not in raw
    if status >= 400:
        body = orjson.loads(raw)
        if path.startswith("/v1/messages"):  # Anthropic's shape
            assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
            assert body["error"]["message"]
            return
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]


def assert_healthy(server: Server) -> None:
    status, raw = send(server, "GET", "/health", None, "")
    assert status == 200 and orjson.loads(raw)["status"] == "ok"


# -- hypothesis: bodies near and far from valid -----------------------------------------------

short = st.text(max_size=12)
scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | short
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short, inner, max_size=3),
    max_leaves=8,
)
roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "wizard", ""])
content = short | st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image_url", "audio"])},
        optional={"text": short, "image_url": junk},
    ),
    max_size=2,
)
message = st.fixed_dictionaries({"role": roles}, optional={"content": content | junk, "name": junk})
sampling = {
    "model": st.sampled_from([CHAT_MODEL, EMBEDDING_MODEL, "no-such-model", "../x", ""]) | junk,
    "stream": st.booleans() | junk,
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | junk}),
    "temperature": st.floats(-1, 3) | junk,
    "top_p": st.floats(-1, 2) | junk,
    "seed": st.integers(-(2**70), 2**70) | junk,
    "stop": short | st.lists(short, max_size=20) | junk,
    "n": st.integers(-1, 3) | junk,
    "logit_bias": junk,
}
BODIES: dict[str, st.SearchStrategy[Any]] = {
    "/v1/chat/completions": st.fixed_dictionaries(
        {},
        optional={
            "messages": st.lists(message, max_size=3) | junk,
            "logprobs": st.booleans() | junk,
            "top_logprobs": st.integers(-1, 30) | junk,
            "response_format": junk,
            "tools": junk,
            **sampling,
        },
    ),
    "/v1/completions": st.fixed_dictionaries(
        {},
        optional={
            "prompt": short | st.lists(st.integers(-5, 10**6), max_size=4) | junk,
            "suffix": short | junk,
            "echo": st.booleans() | junk,
            "logprobs": st.integers(-1, 30) | junk,
            "best_of": junk,
            **sampling,
        },
    ),
    "/v1/responses": st.fixed_dictionaries(
        {},
        optional={
            "input": short | st.lists(message | junk, max_size=3) | junk,
            "instructions": short | junk,
            "tools": junk,
            "tool_choice": junk,
            "text": junk,
            "previous_response_id": short | junk,
            **sampling,
        },
    ),
    "/v1/messages": st.fixed_dictionaries(
        {},
        optional={
            "messages": st.lists(message, max_size=3) | junk,
            "system": short | junk,
            "tools": junk,
            "tool_choice": junk,
            "stop_sequences": junk,
            "thinking": junk,
            **sampling,
        },
    ),
    "/v1/embeddings": st.fixed_dictionaries(
        {},
        optional={
            "input": short | st.lists(short, max_size=4) | junk,
            "model": st.sampled_from([EMBEDDING_MODEL, CHAT_MODEL, "nope"]) | junk,
            "encoding_format": st.sampled_from(["float", "base64", "hex"]) | junk,
            "dimensions": junk,
        },
    ),
}
MEDIA = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", "application/xml"]
)


def encoded(body: Any) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError:  # NaN and friends are fine; integers beyond 64 bits are not for orjson
        return repr(body).encode()


@pytest.mark.parametrize("path", sorted(BODIES))
def test_hypothesis_bodies_never_break_a_route(server: Server, path: str) -> None:
    @FUZZ
    @given(body=BODIES[path] | junk, media=MEDIA, garble=st.booleans())
    def one(body: Any, media: str, garble: bool) -> None:
        raw = encoded(cheap(body))
        if garble:  # cut the JSON short: malformed bodies too
            raw = raw[: len(raw) // 2]
        check(*send(server, "POST", path, raw, media), path)

    one()
    assert_healthy(server)


def test_hypothesis_paths_and_methods(server: Server) -> None:
    @FUZZ
    @given(
        method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
        path=st.sampled_from(["/v1/models", "/health", "/metrics", "/v1/models/", "/nope"]).flatmap(
            lambda p: st.builds(lambda s: p + s, st.text("abc./%-_", max_size=8))
        ),
    )
    def one(method: str, path: str) -> None:
        status, raw = send(
            server, method, path, b"{}" if method != "GET" else None, "application/json"
        )
        assert status < 500 and b"Traceback" not in raw

    one()
    assert_healthy(server)


# -- schemathesis: cases from the server's own schema ------------------------------------------


def test_schemathesis_cases_from_openapi(server: Server, tmp_path: Path) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the server's schema is valid
        operations.append(result.ok())
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/embeddings"}
    for operation in operations:

        @settings(FUZZ, max_examples=8)
        @given(case=operation.as_strategy())
        def one(case: Any) -> None:
            if isinstance(case.body, dict):
                case.body = cheap(case.body)
            response = case.call(base_url=server.url, timeout=REQUEST_TIMEOUT_S)
            check(response.status_code, response.content, case.path)

        one()
        assert_healthy(server)
    # the cases reached the model, not only the validation
    assert server.health()["completion_tokens"] > 0

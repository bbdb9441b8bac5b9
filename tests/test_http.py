"""The OpenAI-compatible port, end to end: `python -m sidecar serve` on the real default models,
driven by the official `openai` client (one server for the whole module)."""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam
from transformers import AutoTokenizer

from sidecar.benchmarks.http import http_throughput
from sidecar.completion.fim import build_fim_prompt
from sidecar.completion.prompt import heal
from sidecar.models.defaults import CHAT_MODEL, EMBEDDING_MODEL
from tests.helpers.http_server import Server, start_server, stop_server
from tests.tiny_models import tiny_fim_model
from tests.tiny_vlm import tiny_vlm_model

QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France?"}
]


@pytest.fixture(scope="module")
def fim_model(models_dir: Path) -> str:
    return tiny_fim_model(models_dir, "qwen")


@pytest.fixture(scope="module")
def vlm_model(models_dir: Path) -> str:
    return tiny_vlm_model(models_dir)


@pytest.fixture(scope="module")
def server(
    sidecar_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    fim_model: str,
    vlm_model: str,
) -> Iterator[Server]:
    srv = start_server(sidecar_env, tmp_path_factory.mktemp("http") / "server.log")
    yield srv
    stop_server(srv)
    assert "Traceback" not in srv.log.read_text()


# -- models ----------------------------------------------------------------------------------


def extra_fields(model: openai.types.Model) -> dict[str, Any]:
    """The fields beyond OpenAI's: the SDK keeps them (its models allow extras)."""
    assert model.model_extra is not None
    return model.model_extra


def test_model_list_has_every_local_model_with_kind(server: Server, fim_model: str) -> None:
    models = {m.id: m for m in server.client().models.list()}
    assert {CHAT_MODEL, EMBEDDING_MODEL, fim_model} <= set(models)
    assert extra_fields(models[CHAT_MODEL])["kind"] == "text"
    assert extra_fields(models[EMBEDDING_MODEL])["kind"] == "embedding"
    assert extra_fields(models[fim_model])["fim"] == "qwen"
    assert models[CHAT_MODEL].owned_by == "local"
    assert extra_fields(models[CHAT_MODEL])["roles"] == []  # editor roles stay in the editor
    assert "path" not in extra_fields(models[CHAT_MODEL])  # nor do local file paths
    assert extra_fields(server.client().models.retrieve(EMBEDDING_MODEL))["kind"] == "embedding"
    with pytest.raises(openai.NotFoundError):
        server.client().models.retrieve("no-such-model")


# -- chat ------------------------------------------------------------------------------------


def test_chat_answers_with_the_chat_template(server: Server) -> None:
    reply = server.client().chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, max_tokens=16
    )
    assert reply.choices[0].message.content == "The capital of France is Paris."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens <= 16
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.model == CHAT_MODEL


def test_chat_stream_concatenates_to_the_answer_and_ends_with_usage(server: Server) -> None:
    stream = server.client().chat.completions.create(
        model=CHAT_MODEL,
        messages=QUESTION,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The capital of France is Paris."
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 3


def test_chat_max_tokens_stop_and_logprobs(server: Server) -> None:
    client = server.client()
    short = client.chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, max_completion_tokens=3
    )
    assert short.choices[0].message.content == "The capital of"
    assert short.choices[0].finish_reason == "length"

    stopped = client.chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, max_tokens=16, stop="of France"
    )
    assert stopped.choices[0].message.content == "The capital "
    assert stopped.choices[0].finish_reason == "stop"

    scored = client.chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, max_tokens=3, logprobs=True, top_logprobs=2
    )
    assert scored.choices[0].logprobs is not None
    content = scored.choices[0].logprobs.content
    assert content is not None
    assert "".join(t.token for t in content) == "The capital of"
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in content)
    assert content[0].top_logprobs[0].token == content[0].token  # greedy picks the top one


def test_sampling_with_a_seed_is_reproducible(server: Server) -> None:
    client = server.client()
    kw: dict[str, Any] = dict(
        model=CHAT_MODEL, messages=QUESTION, max_tokens=8, temperature=1.5, top_p=0.95, seed=7
    )
    first = client.chat.completions.create(**kw).choices[0].message.content
    assert client.chat.completions.create(**kw).choices[0].message.content == first


def png_data_url(color: tuple[int, int, int]) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_chat_with_an_image_on_a_vision_model(server: Server, vlm_model: str) -> None:
    client = server.client()

    def ask(model: str, url: str, **kw: Any) -> Any:
        content: list[ChatCompletionContentPartParam] = [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": url}},
        ]
        return client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": content}], max_tokens=4, **kw
        )

    red = png_data_url((255, 0, 0))
    reply = ask(vlm_model, red)
    assert reply.model == vlm_model and reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.completion_tokens >= 1
    chunks = list(ask(vlm_model, red, stream=True))
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks)
        == reply.choices[0].message.content
    )

    with pytest.raises(openai.BadRequestError, match="does not take images"):
        ask(CHAT_MODEL, red)
    with pytest.raises(openai.BadRequestError, match="data: URL"):
        ask(vlm_model, "https://example.com/cat.png")
    with pytest.raises(openai.BadRequestError, match="data: URL"):
        ask(vlm_model, "/etc/passwd")


# -- completions -----------------------------------------------------------------------------


def test_completion_continues_the_raw_prompt_and_echoes(server: Server) -> None:
    client = server.client()
    prompt = "def add(a, b):\n"
    plain = client.completions.create(model=CHAT_MODEL, prompt=prompt, max_tokens=6)
    assert plain.choices[0].text.strip()
    assert plain.choices[0].finish_reason == "length"
    echoed = client.completions.create(model=CHAT_MODEL, prompt=prompt, max_tokens=6, echo=True)
    assert echoed.choices[0].text == prompt + plain.choices[0].text

    streamed = client.completions.create(model=CHAT_MODEL, prompt=prompt, max_tokens=6, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == plain.choices[0].text


def test_suffix_builds_a_fim_prompt_with_the_models_tokens(
    server: Server, fim_model: str, models_dir: Path
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(models_dir / fim_model)
    prefix, suffix = "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"
    client = server.client()
    fim = client.completions.create(model=fim_model, prompt=prefix, suffix=suffix, max_tokens=4)
    head, healed = heal(prefix)  # the space after "return" is cut, as the editor cuts it
    assert healed == " "
    expected = tokenizer.encode(build_fim_prompt("qwen", head, suffix))
    assert fim.usage is not None and fim.usage.prompt_tokens == len(expected)
    assert "<|fim" not in fim.choices[0].text  # FIM markers end the middle, never show

    plain = client.completions.create(model=fim_model, prompt=prefix, max_tokens=1)
    assert plain.usage is not None and plain.usage.prompt_tokens == len(tokenizer.encode(prefix))


def test_suffix_on_a_model_without_fim_tokens_is_a_400(server: Server) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        server.client().completions.create(
            model=CHAT_MODEL, prompt="def f():", suffix="\n", max_tokens=4
        )
    assert info.value.code == "fim_not_supported"
    assert info.value.param == "suffix"


# -- embeddings ------------------------------------------------------------------------------


def test_embeddings_float_and_base64_agree(server: Server) -> None:
    client = server.client()
    texts = ["def add(a, b): return a + b", "the capital of France"]
    floats = client.embeddings.create(model=EMBEDDING_MODEL, input=texts, encoding_format="float")
    vectors = np.array([d.embedding for d in floats.data])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert floats.usage.prompt_tokens > 0

    raw = client.embeddings.with_raw_response.create(
        model=EMBEDDING_MODEL, input=texts, encoding_format="base64"
    )
    data = orjson.loads(raw.http_response.content)["data"]
    decoded = np.array([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in data])
    assert np.allclose(decoded, vectors, atol=1e-6)

    single = client.embeddings.create(model=EMBEDDING_MODEL, input=texts[0])  # SDK: base64
    assert np.allclose(single.data[0].embedding, vectors[0], atol=1e-6)


# -- errors ----------------------------------------------------------------------------------


def test_errors_raise_the_sdks_exception_classes(server: Server) -> None:
    client = server.client()
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=QUESTION, max_tokens=2)
    assert missing.value.code == "model_not_found" and missing.value.param == "model"

    bad: list[dict[str, Any]] = [
        dict(n=2),
        dict(max_tokens=-1),
        dict(response_format={"type": "xml"}),
        dict(messages=[]),
        dict(temperature=5),
        dict(messages=[{"role": "wizard", "content": "hi"}]),
    ]
    for extra in bad:
        kw: dict[str, Any] = dict(model=CHAT_MODEL, messages=QUESTION, max_tokens=2) | extra
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(**kw)
        assert info.value.body is not None, extra
    with pytest.raises(openai.BadRequestError, match="Invalid type: wizard") as info:
        client.chat.completions.create(
            model=CHAT_MODEL,
            messages=QUESTION,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "wizard"}},
            },
        )
    assert info.value.param == "response_format"

    with pytest.raises(openai.BadRequestError, match="embedding model"):
        client.chat.completions.create(model=EMBEDDING_MODEL, messages=QUESTION, max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="text model"):
        client.embeddings.create(model=CHAT_MODEL, input="hi")

    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=CHAT_MODEL, prompt="hello " * 9000, max_tokens=2)
    assert info.value.code == "context_length_exceeded"
    assert server.health()["status"] == "ok"


@pytest.mark.parametrize("ids", [[10_000_000], [-1], [49152]])
def test_token_ids_outside_the_vocabulary_are_a_400_not_a_crash(
    server: Server, ids: list[int]
) -> None:
    """`{"prompt": [10000000]}` used to segfault the server (exit 139); `[-1]` was a 500."""
    status, body = server.raw(
        "POST",
        "/v1/completions",
        orjson.dumps({"prompt": ids, "max_tokens": 1}),
        {"content-type": "application/json"},
    )
    assert status == 400, body
    assert body["error"]["param"] == "prompt" and "vocabulary" in body["error"]["message"]
    assert server.proc.poll() is None
    assert server.health()["status"] == "ok"


def test_negative_seed_answers_instead_of_hanging(server: Server) -> None:
    reply = server.client(timeout=60).chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, max_tokens=3, temperature=0.7, seed=-1
    )
    assert reply.choices[0].finish_reason == "length"
    assert server.health()["running"] == 0


def test_malformed_json_is_a_400_and_the_server_keeps_serving(server: Server) -> None:
    status, body = server.raw("POST", "/v1/chat/completions", b'{"messages": [', {})
    assert status == 400
    assert body["error"]["code"] == "invalid_json"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    status, body = server.raw("POST", "/v1/chat/completions", b"[1, 2]", {})
    assert status == 400
    status, body = server.raw("POST", "/v1/embeddings", b'{"input": "x", "encoding_format": 3}', {})
    assert status == 400 and body["error"]["param"] == "encoding_format"
    assert server.health()["status"] == "ok"


def test_oversize_body_is_a_413(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", "/v1/chat/completions")
        conn.putheader("Content-Length", str(64 << 20))
        conn.putheader("Content-Type", "application/json")
        conn.endheaders()  # the body never comes: refused on the header alone
        resp = conn.getresponse()
        assert resp.status == 413
        assert orjson.loads(resp.read())["error"]["code"] == "request_too_large"
    finally:
        conn.close()


def test_wrong_host_header_is_refused(server: Server) -> None:
    status, body = server.raw("GET", "/v1/models", headers={"Host": "attacker.example:80"})
    assert status == 421
    assert body["error"]["code"] == "invalid_host"
    status, _ = server.raw("GET", "/v1/models", headers={"Host": f"localhost:{server.port}"})
    assert status == 200


# -- batching and cancellation ---------------------------------------------------------------


async def test_eight_concurrent_streams_complete_in_one_batch(server: Server) -> None:
    client = server.async_client()

    async def one(i: int) -> tuple[str, int]:
        stream = await client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": f"Say the number {i}."}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
        text, tokens = "", 0
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        return text, tokens

    results = await asyncio.gather(*(one(i) for i in range(8)))
    await client.close()
    assert all(text and tokens > 0 for text, tokens in results)
    health = server.health()
    assert health["max_batch_seen"] >= 2
    assert health["running"] == 0
    metrics = server.text("/metrics")
    batch = re.search(r"^mlx_sidecar_max_batch_seen (\S+)$", metrics, re.M)
    assert batch is not None and float(batch.group(1)) >= 2
    assert 'mlx_sidecar_http_requests_total{route="/v1/chat/completions",status="200"}' in metrics


async def test_client_disconnect_mid_stream_frees_the_slot(server: Server) -> None:
    client = server.async_client()
    stream = await client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=400,  # tens of seconds here if it ran to the end
        stream=True,
    )
    got = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            got += 1
            if got == 2:
                break
    assert server.health()["running"] == 1
    started = time.monotonic()
    await stream.close()
    await client.close()
    while server.health()["running"] and time.monotonic() - started < 10:
        await asyncio.sleep(0.1)
    assert server.health()["running"] == 0
    assert time.monotonic() - started < 10


def test_client_timeout_on_a_plain_request_frees_the_slot(server: Server) -> None:
    client = server.client(timeout=1.0)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "Write a long story about a dragon."}],
            max_tokens=400,
        )
    started = time.monotonic()
    while server.health()["running"] and time.monotonic() - started < 10:
        time.sleep(0.1)
    assert server.health()["running"] == 0


async def test_loadtest_helper_measures_aggregate_throughput(server: Server) -> None:
    run = await http_throughput(server.url, CHAT_MODEL, concurrency=2, max_tokens=3)
    assert run["completion_tokens"] == 6
    assert run["tokens_per_s"] > 0 and run["ttft_s_max"] is not None


@pytest.fixture
def own_server(sidecar_env: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, for a test that stops it (the module's server must live on
    for whichever test runs next, in any order)."""
    srv = start_server(sidecar_env, tmp_path / "server.log")
    yield srv
    if srv.proc.poll() is None:
        stop_server(srv)


def test_stopping_the_server_ends_open_streams_cleanly(own_server: Server) -> None:
    """SIGTERM, as a service manager would send, while a stream is open."""
    server = own_server
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    body = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
        "max_tokens": 400,
        "stream": True,
    }
    conn.request("POST", "/v1/chat/completions", body=orjson.dumps(body))
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.readline().startswith(b"data: ")  # streaming has begun
    started = time.monotonic()
    server.proc.terminate()
    rest = resp.read()
    conn.close()
    assert b"the server is stopping" in rest
    assert rest.rstrip().endswith(b"data: [DONE]")
    assert server.proc.wait(30) == 0
    assert time.monotonic() - started < 15

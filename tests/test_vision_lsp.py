"""Images in `mlx/chat` (issue 14): OpenAI-style content parts over JSON-RPC reach the tiny
random-weight Qwen2-VL and the reply streams; a text-only model and an over-size image are
clear errors, and the server goes on serving. A real `mlx-sidecar stdio` driven by pytest-lsp."""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from lsprotocol import types
from PIL import Image
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from sidecar.models.defaults import CHAT_MODEL
from tests.helpers.lsp import start_lsp
from tests.test_vision import NOISE_PNG, data_url, png
from tests.tiny_vlm import TINY_VLM_ID, tiny_vlm_model

pytestmark = pytest.mark.asyncio(loop_scope="module")

BIG_PNG = png(Image.fromarray(np.random.default_rng(1).integers(0, 255, (160, 160, 3), np.uint8)))
MAX_IMAGE_BYTES = 32 << 10  # the server's limit in this module: BIG_PNG is over it, NOISE_PNG under


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(sidecar_env: dict[str, str], models_dir: Path) -> AsyncIterator[LanguageClient]:
    tiny_vlm_model(models_dir)  # built here when no other module built it first
    assert len(NOISE_PNG) < MAX_IMAGE_BYTES < len(BIG_PNG)
    env = {**sidecar_env, "MLX_SIDECAR_LIMITS__MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES)}
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "sidecar", "stdio"], server_env=env
    )
    client = await start_lsp(config)
    await client.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities()))
    deltas: list[Any] = []
    client.deltas = deltas  # type: ignore[attr-defined]
    client.feature("mlx/chat/delta")(lambda params: deltas.append(params))
    yield client
    await client.shutdown_session()
    await client.stop()


def ask(image: bytes) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": data_url(image)}},
            ],
        }
    ]


async def chat(client: LanguageClient, **params: Any) -> Any:
    return await asyncio.wait_for(client.protocol.send_request_async("mlx/chat", params), 120)


async def test_an_image_part_reaches_the_vision_model_and_the_reply_streams(
    client: LanguageClient,
) -> None:
    client.deltas.clear()  # type: ignore[attr-defined]
    result = await chat(
        client,
        model=TINY_VLM_ID,
        messages=ask(NOISE_PNG),
        max_tokens=6,
        temperature=1.0,  # greedy decoding of these random weights makes no visible text
        seed=0,
        stream_token="img-1",
    )
    assert result.model == TINY_VLM_ID
    assert result.usage.completion_tokens > 0
    # The image became vision tokens in the prompt: the 56x56 image's 4 merged patches between
    # <|vision_start|> and <|vision_end|>.
    text_only = await chat(
        client,
        model=TINY_VLM_ID,
        messages=[{"role": "user", "content": "What is in this picture?"}],
        max_tokens=1,
    )
    assert result.usage.prompt_tokens == text_only.usage.prompt_tokens + 6
    streamed = [d for d in client.deltas if d.stream_token == "img-1"]  # type: ignore[attr-defined]
    assert len(streamed) >= 2  # token by token, not one block at the end
    assert "".join(d.delta for d in streamed) == result.text


async def test_a_text_only_model_says_it_does_not_take_images(client: LanguageClient) -> None:
    with pytest.raises(JsonRpcException) as e:
        await chat(client, model=CHAT_MODEL, messages=ask(NOISE_PNG), max_tokens=4)
    assert "does not take images" in str(e.value)
    assert e.value.code == -32602  # the request's fault, not the server's
    assert (
        isinstance(e.value.data, dict) and e.value.data["code"] == "images_not_supported"
    )  # what the chat view offers a fix for


async def test_an_image_over_the_limit_is_refused_before_any_work(client: LanguageClient) -> None:
    with pytest.raises(JsonRpcException) as e:
        await chat(client, model=TINY_VLM_ID, messages=ask(BIG_PNG), max_tokens=4)
    assert e.value.code == -32602
    assert f"at most {MAX_IMAGE_BYTES}" in str(e.value) and "MAX_IMAGE_BYTES" in str(e.value)
    # The server is still there for the next request.
    ok = await chat(client, model=TINY_VLM_ID, messages=ask(NOISE_PNG), max_tokens=2)
    assert ok.usage.completion_tokens > 0


async def test_a_part_with_a_remote_url_is_refused(client: LanguageClient) -> None:
    messages = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}],
        }
    ]
    with pytest.raises(JsonRpcException) as e:
        await chat(client, model=TINY_VLM_ID, messages=messages, max_tokens=2)
    assert e.value.code == -32602 and "data: URL" in str(e.value)


async def test_an_image_is_never_read_from_a_server_path(
    client: LanguageClient, tmp_path: Path
) -> None:
    """Issue 23: a text part carrying `image_url` with a path was decoded from the server's
    disk. Any part, any path: -32602 with one message that does not say whether it exists."""
    real = tmp_path / "real.png"
    real.write_bytes(NOISE_PNG)
    messages = set()
    for url in (str(real), f"file://{real}", "file:///etc/shadow", "/no/such.png"):
        part = {"type": "text", "text": "x", "image_url": {"url": url}}
        with pytest.raises(JsonRpcException) as e:
            await chat(client, model=TINY_VLM_ID, messages=[{"role": "user", "content": [part]}])
        assert e.value.code == -32602, url
        messages.add(str(e.value).replace(url, "URL"))
    assert len(messages) == 1 and "reads no files" in messages.pop()


async def test_the_size_check_counts_decoded_bytes() -> None:
    from sidecar import limits

    url = "data:image/png;base64," + base64.b64encode(b"x" * 100).decode()
    limits.check_image_url(url, limits.Limits(max_image_bytes=100))
    with pytest.raises(ValueError, match="101 bytes"):
        url = "data:image/png;base64," + base64.b64encode(b"x" * 101).decode()
        limits.check_image_url(url, limits.Limits(max_image_bytes=100))


async def test_a_vision_model_can_be_the_chat_role_and_takes_the_images(
    client: LanguageClient,
) -> None:
    """What the panel's "Switch to <vision model>" does: select it for chat; a request without
    `model` then goes to it."""
    selected = await client.protocol.send_request_async(
        "mlx/models/select", {"role": "chat", "model": TINY_VLM_ID}
    )
    assert selected.roles.chat == TINY_VLM_ID
    try:
        result = await chat(client, messages=ask(NOISE_PNG), max_tokens=2)
        assert result.model == TINY_VLM_ID and result.usage.completion_tokens > 0
    finally:
        await client.protocol.send_request_async(
            "mlx/models/select", {"role": "chat", "model": CHAT_MODEL}
        )

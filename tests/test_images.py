"""Images on the OpenAI port (issue 23): only inline `data:` URLs, whatever a part's type says
(no server file is ever read, and the refusal does not say whether a path exists), and pixel
bombs refused from their headers before anything is decoded; then hypothesis over every
combination of a content part's type and keys. A real HTTP server, in-process, on
the tiny random-weight Qwen2-VL (tests/tiny_vlm.py)."""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import struct
import tempfile
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.engine.engine import Engine
from sidecar.http.server import HttpServer, serve_http
from tests.helpers.fuzzing import FUZZ, check_error_body, post
from tests.helpers.http_client import request
from tests.test_vision import NOISE_PNG, data_url, vlm_engine, vlm_store  # noqa: F401
from tests.tiny_vlm import TINY_VLM_ID


@pytest.fixture(scope="module")
async def port(vlm_engine: Engine) -> AsyncIterator[HttpServer]:  # noqa: F811
    server = await serve_http(vlm_engine, "127.0.0.1", 0)
    yield server
    await server.stop()


async def chat(server: HttpServer, content: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    body = {
        "model": TINY_VLM_ID,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 2,
    }
    head = {"Content-Type": "application/json"}
    status, _, out = await asyncio.to_thread(
        request, server.port, "POST", "/v1/chat/completions", orjson.dumps(body), head
    )
    return status, orjson.loads(out)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def grey_png(width: int, height: int) -> bytes:
    """A valid greyscale PNG of `width`x`height` zero pixels, compressed row by row (so the
    test never holds the decoded image): 13000x13000 is 169 M pixels in ~164 KB."""
    z = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0 + one byte per pixel
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def text(t: str = "What is in this picture?") -> dict[str, Any]:
    return {"type": "text", "text": t}


def image(url: str, kind: str = "image_url") -> dict[str, Any]:
    return {"type": kind, "image_url": {"url": url}} | ({"text": "x"} if kind == "text" else {})


async def test_an_image_is_never_read_from_a_server_path(port: HttpServer, tmp_path: Path) -> None:
    """A part of any type carrying `image_url` with a path (existing or not, plain or file://)
    is a 400 naming the rule, with the same message for every path."""
    real = tmp_path / "real.png"
    real.write_bytes(NOISE_PNG)
    messages = set()
    for url in (str(real), f"file://{real}", str(tmp_path / "missing.png"), "file:///etc/shadow"):
        for kind in ("text", "image_url"):
            status, body = await chat(port, [text(), image(url, kind)])
            assert status == 400, (url, kind, body)
            assert body["error"]["param"].startswith("messages"), body
            messages.add(body["error"]["message"].replace(url, "URL"))
    assert len(messages) == 1, messages
    (message,) = messages
    assert "data: URL" in message and "reads no files" in message
    assert "shadow" not in message and "cannot identify" not in message
    # an inline image in the same place is served
    status, body = await chat(port, [text(), image(data_url(NOISE_PNG))])
    assert status == 200 and body["usage"]["completion_tokens"] > 0


async def test_a_pixel_bomb_is_refused_from_its_header(port: HttpServer) -> None:
    """169 M pixels in a 164 KB PNG: refused before decoding, and the server serves on."""
    bomb = grey_png(13000, 13000)
    assert len(bomb) < 200_000
    status, body = await chat(port, [text(), image(data_url(bomb))])
    assert status == 400, body
    assert "13000x13000 pixels" in body["error"]["message"]
    assert "MAX_IMAGE_PIXELS" in body["error"]["message"]
    status, body = await chat(port, [text(), image(data_url(NOISE_PNG))])
    assert status == 200


async def test_the_pixels_of_one_request_are_bounded_together(port: HttpServer) -> None:
    """Each 4000x4000 image is allowed alone; four of them in one request are not."""
    one = data_url(grey_png(4000, 4000))
    status, body = await chat(port, [text(), *[image(one)] * 4])
    assert status == 400, body
    assert "MAX_REQUEST_PIXELS" in body["error"]["message"]


async def test_decoded_images_count_against_the_memory_budget(
    port: HttpServer,
    vlm_engine: Engine,  # noqa: F811
) -> None:
    governor = vlm_engine.governor
    budget = governor.budget_bytes
    # room for the weights and 1 MiB: a 1000x1000 image decodes to 3 MB
    governor.budget_bytes = governor.weights_bytes() + (1 << 20)
    try:
        status, body = await chat(port, [text(), image(data_url(grey_png(1000, 1000)))])
    finally:
        governor.budget_bytes = budget
    assert status == 503, body
    assert body["error"]["code"] == "insufficient_memory"
    assert "images decode to 3 MiB" in body["error"]["message"]
    assert governor.image_bytes() == 0  # nothing stays held after the refusal
    status, body = await chat(port, [text(), image(data_url(NOISE_PNG))])
    assert status == 200 and governor.image_bytes() == 0


# -- content parts ----------------------------------------------------------------------------

SERVER_FILE = Path(tempfile.gettempdir()) / f"fuzz-server-image-{os.getpid()}.png"
SOURCES = {
    "data": data_url(NOISE_PNG),
    "path": str(SERVER_FILE),
    "file_url": f"file://{SERVER_FILE}",
    "missing": "/no/such/dir/image.png",
    "shadow": "file:///etc/shadow",
    "http": "http://127.0.0.1:9/cat.png",
    "base64": base64.b64encode(NOISE_PNG).decode(),
    "data_junk": "data:image/png;base64,@@@",
    "data_text": "data:text/plain,hello",
}
source = st.sampled_from(sorted(SOURCES))
image_value = source.map(lambda s: {"url": SOURCES[s]}) | source.map(lambda s: SOURCES[s])
part = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "image", "input_image", "audio", ""])},
    optional={
        "text": st.text(max_size=8),
        "image_url": image_value,
        "image": image_value,
        "input_image": image_value,
    },
)


def carries_a_non_inline_image(parts: list[dict[str, Any]]) -> bool:
    for p in parts:
        value = p.get("image_url")
        url = value.get("url") if isinstance(value, dict) else value
        if isinstance(url, str) and not url.startswith("data:"):
            return True
    return False


async def test_fuzzed_content_parts_never_read_a_server_file(port: HttpServer) -> None:
    SERVER_FILE.write_bytes(NOISE_PNG)  # a real image, so reading it would succeed
    outcomes: dict[int, int] = {}

    @FUZZ
    @given(st.lists(part, min_size=1, max_size=3))
    def one(parts: list[dict[str, Any]]) -> None:
        body = {
            "model": TINY_VLM_ID,
            "messages": [{"role": "user", "content": parts}],
            "max_tokens": 1,
        }
        status, raw, _ = post(port.port, "/v1/chat/completions", body)
        outcomes[status] = outcomes.get(status, 0) + 1
        error = check_error_body(status, raw)
        assert status < 500, raw[:300]
        if carries_a_non_inline_image(parts):
            assert status == 400, (parts, raw[:300])
        if error is not None:
            for word in ("fuzz-server-image", "shadow", "cannot identify", "No such file"):
                assert word not in error["message"], error

    try:
        await asyncio.to_thread(one)
    finally:
        SERVER_FILE.unlink(missing_ok=True)
    assert outcomes.get(400) and outcomes.get(200), outcomes  # both kinds were generated
    ok = {"model": TINY_VLM_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    assert (await asyncio.to_thread(post, port.port, "/v1/chat/completions", ok))[0] == 200

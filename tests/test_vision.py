"""Streamed chat with images on a tiny random-weight Qwen2-VL (tests/tiny_vlm.py), beside the real
SmolLM2 text model in one engine."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.engine.requests import Delta, EngineError, GenerateRequest, Result
from sidecar.engine.vision_runner import VisionRunner, message_images
from sidecar.errors import OverMemoryBudget, result_error
from sidecar.models.defaults import CHAT_MODEL
from sidecar.models.pool import estimate_bytes
from sidecar.models.store import ModelStore
from tests.tiny_vlm import TINY_VLM_ID, make_tiny_vlm

QUESTION = "What is in this picture?"


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


NOISE_PNG = png(
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (56, 56, 3), dtype=np.uint8))
)
RED_PNG = png(Image.new("RGB", (64, 64), "red"))


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def image_messages(data: bytes) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": QUESTION},
                {"type": "image_url", "image_url": {"url": data_url(data)}},
            ],
        }
    ]


@pytest.fixture(scope="session")
def vlm_store(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp store: the tiny Qwen2-VL (built once per session) beside the real SmolLM2."""
    store = tmp_path_factory.mktemp("vision-store")
    (store / CHAT_MODEL).symlink_to(models_dir / CHAT_MODEL, target_is_directory=True)
    make_tiny_vlm(store / TINY_VLM_ID, models_dir)
    return store


@pytest.fixture(scope="session")
async def vlm_engine(vlm_store: Path) -> AsyncIterator[Engine]:
    settings = Settings(
        models_dir=vlm_store, use_hf_cache=False, chat_model=CHAT_MODEL, idle_ttl_s=0
    )
    async with Engine(settings) as eng:
        await eng.load(TINY_VLM_ID)
        yield eng


async def run(engine: Engine, request: GenerateRequest) -> tuple[list[Delta], Result]:
    deltas, result = [], None
    async for event in engine.generate(request):
        if isinstance(event, Delta):
            deltas.append(event)
        else:
            result = event
    assert result is not None
    return deltas, result


async def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def image_request(engine: Engine, data: bytes, **options: object) -> GenerateRequest:
    messages = image_messages(data)
    prompt = await engine.chat_prompt(messages, TINY_VLM_ID)
    return GenerateRequest(
        prompt=prompt, model=TINY_VLM_ID, images=message_images(messages), **options
    )


def test_store_detects_the_tiny_model_as_vision(vlm_store: Path) -> None:
    info = ModelStore(vlm_store, use_hf_cache=False).info(TINY_VLM_ID)
    assert info.kind == "vision"
    assert info.size_bytes < 32 * 2**20


async def test_chat_prompt_renders_image_parts_for_a_vision_model(vlm_engine: Engine) -> None:
    messages = image_messages(RED_PNG)
    prompt = await vlm_engine.chat_prompt(messages, TINY_VLM_ID)
    assert isinstance(prompt, str)
    assert prompt.count("<|image_pad|>") == 1
    assert QUESTION in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert "base64" not in prompt  # the image travels in `images`, never as prompt text
    assert message_images(messages) == [data_url(RED_PNG)]
    runner = vlm_engine.pool.get(TINY_VLM_ID).runner
    assert isinstance(runner, VisionRunner)
    assert runner.tokenizer.convert_tokens_to_ids("<|im_end|>") in runner.stop_ids


async def test_streamed_chat_with_an_image(vlm_engine: Engine) -> None:
    request = await image_request(vlm_engine, NOISE_PNG, max_tokens=12)
    deltas, result = await run(vlm_engine, request)
    assert result.finish_reason in ("stop", "length")
    assert result.error is None
    assert len(deltas) >= 3  # streamed token by token, not in one piece
    assert "".join(d.text for d in deltas) == result.text
    assert result.completion_tokens >= 3
    # The 56x56 image became 4 image tokens (2x2 merged 14-pixel patches) in place of the single placeholder.
    text_only = await vlm_engine.tokenize(request.prompt, TINY_VLM_ID)
    assert result.prompt_tokens == len(text_only) - 1 + 4
    assert result.time_to_first_token_s is not None and result.tokens_per_s is not None
    assert vlm_engine.status()["requests"].get("error", 0) == 0


async def test_the_image_changes_the_output(vlm_engine: Engine) -> None:
    async def first_token(data: bytes) -> list[tuple[str, float]]:
        request = await image_request(vlm_engine, data, max_tokens=1, logprobs=5)
        deltas, result = await run(vlm_engine, request)
        assert result.completion_tokens == 1
        return [alt for d in deltas for lp in d.logprobs or [] for alt in lp.top]

    noise, red, noise_again = (
        await first_token(NOISE_PNG),
        await first_token(RED_PNG),
        await first_token(NOISE_PNG),
    )
    assert len(noise) == len(red) == 5
    assert noise == noise_again  # greedy and deterministic
    assert max(abs(a[1] - b[1]) for a, b in zip(noise, red, strict=True)) > 1e-4


@pytest.mark.parametrize("form", ["path", "bytes", "base64", "file_url"])
async def test_every_image_form_gives_the_same_answer(
    vlm_engine: Engine, tmp_path: Path, form: str
) -> None:
    path = tmp_path / "noise.png"
    path.write_bytes(NOISE_PNG)
    source: str | bytes = {
        "path": str(path),
        "bytes": NOISE_PNG,
        "base64": base64.b64encode(NOISE_PNG).decode(),
        "file_url": f"file://{path}",
    }[form]
    reference = await vlm_engine.complete(await image_request(vlm_engine, NOISE_PNG, max_tokens=4))
    request = await image_request(vlm_engine, NOISE_PNG, max_tokens=4)
    request.images = [source]
    result = await vlm_engine.complete(request)
    assert result.text == reference.text and result.finish_reason == reference.finish_reason


async def test_text_only_chat_on_a_vision_model(vlm_engine: Engine) -> None:
    messages = [{"role": "user", "content": "Say hello."}]
    prompt = await vlm_engine.chat_prompt(messages, TINY_VLM_ID)
    assert "<|image_pad|>" not in prompt
    deltas, result = await run(
        vlm_engine, GenerateRequest(prompt=prompt, model=TINY_VLM_ID, max_tokens=6)
    )
    assert result.error is None and result.completion_tokens >= 1
    assert "".join(d.text for d in deltas) == result.text
    # Token ids work as the prompt too.
    ids = await vlm_engine.tokenize(prompt, TINY_VLM_ID)
    same = await vlm_engine.complete(GenerateRequest(prompt=ids, model=TINY_VLM_ID, max_tokens=6))
    assert same.text == result.text


async def test_stop_string_and_max_tokens(vlm_engine: Engine) -> None:
    full = await vlm_engine.complete(await image_request(vlm_engine, NOISE_PNG, max_tokens=8))
    assert full.finish_reason == "length" and full.completion_tokens == 8
    stop = full.text[2:4]
    assert stop
    deltas, cut = await run(
        vlm_engine, await image_request(vlm_engine, NOISE_PNG, max_tokens=8, stop=[stop])
    )
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.find(stop)]
    assert "".join(d.text for d in deltas) == cut.text


async def test_cancel_mid_stream(vlm_engine: Engine) -> None:
    # A budget it never reaches keeps it running until the cancel lands (at the next step, so
    # only a few tokens are made).
    request = await image_request(vlm_engine, NOISE_PNG, max_tokens=2048)
    deltas, result = [], None
    async for event in vlm_engine.generate(request):
        if isinstance(event, Delta):
            deltas.append(event)
            if len(deltas) == 2:
                assert vlm_engine.cancel(request.request_id)
        else:
            result = event
    assert result is not None and result.finish_reason == "cancelled"
    assert 2 <= result.completion_tokens < 2048
    assert "".join(d.text for d in deltas) == result.text
    # The model serves the next request normally.
    after = await vlm_engine.complete(await image_request(vlm_engine, RED_PNG, max_tokens=2))
    assert after.finish_reason == "length" and after.completion_tokens == 2


async def test_leaving_the_stream_cancels_the_request(vlm_engine: Engine) -> None:
    runner = vlm_engine.pool.get(TINY_VLM_ID).runner
    before = runner.generated_tokens
    request = await image_request(vlm_engine, NOISE_PNG, max_tokens=2048)
    async for event in vlm_engine.generate(request):
        assert isinstance(event, Delta)
        break
    assert await wait_for(lambda: runner.urgency() is None)
    assert runner.generated_tokens - before < 2048  # stopped, not run to its budget


async def test_vision_requests_share_the_worker_and_a_queued_cancel_answers_at_once(
    vlm_engine: Engine,
) -> None:
    from sidecar.engine.vision_runner import MAX_ACTIVE

    runner = vlm_engine.pool.get(TINY_VLM_ID).runner
    # Budgets they never reach (we cancel them) keep the first ones running meanwhile.
    running = [
        await image_request(vlm_engine, NOISE_PNG, max_tokens=2048) for _ in range(MAX_ACTIVE)
    ]
    streams = [vlm_engine.generate(r) for r in running]
    for events in streams:
        assert isinstance(await anext(events), Delta)  # all of them stream at once
    queued = await image_request(vlm_engine, RED_PNG, max_tokens=16)
    last = await image_request(vlm_engine, RED_PNG, max_tokens=3)
    later = [asyncio.create_task(vlm_engine.complete(r)) for r in (queued, last)]
    assert await wait_for(lambda: runner.stats().queue_depth == 2)  # no room: they wait
    assert vlm_engine.cancel(queued.request_id)
    cancelled = await later[0]  # answered while the others still run, not at its turn
    assert cancelled.finish_reason == "cancelled" and cancelled.completion_tokens == 0
    for request, events in zip(running, streams, strict=True):
        assert vlm_engine.cancel(request.request_id)
        ends = [ev async for ev in events if isinstance(ev, Result)]
        assert ends[0].finish_reason == "cancelled" and ends[0].completion_tokens < 2048
    done = await later[1]  # then the next in line runs
    assert done.finish_reason in ("stop", "length") and done.completion_tokens >= 1


async def test_a_long_vision_prompt_prefills_in_chunks_while_text_decodes(
    vlm_engine: Engine,
) -> None:
    """Between the chunks of a vision prompt's prefill the worker steps the text runner, so a
    text stream keeps getting tokens (it used to wait for the whole prefill in one step)."""
    await vlm_engine.load(CHAT_MODEL)
    text_prompt = await vlm_engine.tokenize("The numbers: 1, 2, 3,", CHAT_MODEL)
    times: list[float] = []

    async def text() -> None:
        request = GenerateRequest(prompt=text_prompt, model=CHAT_MODEL, max_tokens=200)
        async for event in vlm_engine.generate(request):
            if isinstance(event, Delta):
                times.append(time.perf_counter())
                if vision_first:
                    return

    vision_first: list[float] = []
    task = asyncio.create_task(text())
    assert await wait_for(lambda: len(times) >= 2)
    long = " ".join(["a picture of red"] * 400)  # ~1,600 tokens: ~25 chunks of 64
    messages = [
        {
            "role": "user",
            "content": [*image_messages(RED_PNG)[0]["content"], {"type": "text", "text": long}],
        }
    ]
    prompt = await vlm_engine.chat_prompt(messages, TINY_VLM_ID)
    request = GenerateRequest(
        prompt=prompt, model=TINY_VLM_ID, images=message_images(messages), max_tokens=2
    )
    submitted = time.perf_counter()
    async for event in vlm_engine.generate(request):
        if isinstance(event, Delta) and not vision_first:
            vision_first.append(time.perf_counter())
    await task
    during = [t for t in times if submitted < t < vision_first[0]]
    assert len(during) >= 5, (len(during), len(times))


async def test_an_image_for_a_text_model_is_refused(vlm_engine: Engine) -> None:
    with pytest.raises(EngineError, match=f"model '{CHAT_MODEL}' does not take images"):
        await vlm_engine.complete(
            GenerateRequest(prompt="Describe it.", model=CHAT_MODEL, images=[RED_PNG])
        )
    with pytest.raises(EngineError, match="does not take images"):
        await vlm_engine.chat_prompt(image_messages(RED_PNG), CHAT_MODEL)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (["https://example.com/cat.png"], "offline"),
        (["data:image/png;base64,!!!notbase64"], "could not be decoded|invalid base64"),
        ([b"not an image at all"], "image 1 could not be decoded"),
        (["/no/such/file.png"], "neither an existing file"),
        ([RED_PNG, RED_PNG], r"1 image placeholder\(s\) but 2 image\(s\)"),
    ],
)
async def test_bad_images_fail_the_call_with_a_clear_error(
    vlm_engine: Engine, images: list, message: str
) -> None:
    request = await image_request(vlm_engine, RED_PNG, max_tokens=2)
    request.images = images
    with pytest.raises(EngineError, match=message):
        await vlm_engine.complete(request)


async def test_a_request_the_processor_rejects_fails_alone(vlm_engine: Engine) -> None:
    request = await image_request(vlm_engine, png(Image.new("RGB", (300, 1), "blue")))
    request.max_tokens = 2
    deltas, result = await run(vlm_engine, request)
    assert result.finish_reason == "error" and not deltas
    assert "aspect ratio" in (result.error or "")
    after = await vlm_engine.complete(await image_request(vlm_engine, RED_PNG, max_tokens=2))
    assert after.finish_reason == "length" and after.error is None


async def test_text_model_chat_accepts_text_content_parts(vlm_engine: Engine) -> None:
    parts = [{"type": "text", "text": "What is "}, {"type": "text", "text": "2+2?"}]
    as_parts = await vlm_engine.chat_prompt([{"role": "user", "content": parts}], CHAT_MODEL)
    as_text = await vlm_engine.chat_prompt(
        [{"role": "user", "content": "What is 2+2?"}], CHAT_MODEL
    )
    assert as_parts == as_text


async def test_text_batch_keeps_decoding_while_a_vision_answer_streams(
    vlm_engine: Engine,
) -> None:
    await vlm_engine.load(CHAT_MODEL)
    chat = await vlm_engine.chat_prompt([{"role": "user", "content": "Count to ten."}], CHAT_MODEL)
    seen: list[tuple[str, float, Delta | Result]] = []

    async def collect(name: str, request: GenerateRequest) -> None:
        async for event in vlm_engine.generate(request):
            seen.append((name, time.perf_counter(), event))

    vision = await image_request(vlm_engine, NOISE_PNG, max_tokens=16)
    texts = [
        GenerateRequest(prompt=chat, model=CHAT_MODEL, max_tokens=8),
        GenerateRequest(prompt=chat, model=CHAT_MODEL, max_tokens=8, temperature=0.7, seed=1),
    ]
    await asyncio.gather(
        collect("vision", vision), *(collect(f"text{i}", r) for i, r in enumerate(texts))
    )
    results = {name: ev for name, _, ev in seen if isinstance(ev, Result)}
    assert set(results) == {"vision", "text0", "text1"}
    assert all(r.error is None and r.completion_tokens >= 1 for r in results.values())
    order = [name for name, _, ev in seen if isinstance(ev, Delta)]
    # Interleaved: text tokens arrived between vision tokens, not after the vision answer.
    first_vision, last_vision = order.index("vision"), len(order) - 1 - order[::-1].index("vision")
    assert any(n.startswith("text") for n in order[first_vision:last_vision])
    assert vlm_engine.status()["max_batch_seen"] >= 2


async def test_a_vision_request_over_the_memory_budget_fails_alone(vlm_store: Path) -> None:
    """Vision requests' KV counts against the budget too (sidecar/engine/memory.py): with 512 KiB
    left beside the weights (1,024 tokens of this model's KV), asking for 3,000 tokens is refused
    with insufficient_memory, and a short answer still runs."""
    probe = Engine(Settings(models_dir=vlm_store, use_hf_cache=False))
    weights = estimate_bytes(probe.store.info(TINY_VLM_ID))
    settings = Settings(
        models_dir=vlm_store,
        use_hf_cache=False,
        idle_ttl_s=0,
        memory_budget_bytes=weights + (512 << 10),
    )
    async with Engine(settings) as eng:
        await eng.load(TINY_VLM_ID)
        big = await eng.complete(await image_request(eng, RED_PNG, max_tokens=3000))
        assert big.finish_reason == "error" and big.error_code == "insufficient_memory"
        assert isinstance(result_error(big), OverMemoryBudget)
        small = await eng.complete(await image_request(eng, RED_PNG, max_tokens=3))
        assert small.finish_reason in ("length", "stop") and small.completion_tokens >= 1

"""The memory governor (sidecar/engine/memory.py) on the real engine and SmolLM2: one budget for
weights, running KV and prompt caches. The budget here is the model's weights plus 24 MiB, so a
short request (KV for 256 tokens: 11.25 MiB) fits twice, one for 512 tokens (22.5 MiB) once, and
one for 1,024 tokens (45 MiB) never."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mlx.core as mx
import orjson
import pytest

from sidecar.benchmarks.soak import rss_of
from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.engine.memory import KV_STEP, is_allocation_failure
from sidecar.engine.requests import Delta, GenerateRequest, Result
from sidecar.errors import InsufficientMemory, OutOfMemory, result_error
from sidecar.http.server import serve_http
from sidecar.models.defaults import CHAT_MODEL, EMBEDDING_MODEL
from sidecar.models.sizes import estimate_bytes
from tests.helpers.http_client import request
from tests.helpers.waiting import until

MiB = 2**20
HEADROOM = 24 * MiB  # the budget beyond the weights


@pytest.fixture(scope="module")
async def tight(settings: Settings) -> AsyncIterator[Engine]:
    """An engine whose budget is SmolLM2's weights + HEADROOM (and room for MiniLM's), one
    chat at a time in the batch."""
    store_settings = settings.model_copy(update={"max_batch": 1})
    probe = Engine(store_settings)
    weights = estimate_bytes(probe.store.info(CHAT_MODEL))
    minilm = estimate_bytes(probe.store.info(EMBEDDING_MODEL))
    budget = weights + minilm + HEADROOM
    async with Engine(store_settings.model_copy(update={"memory_budget_bytes": budget})) as eng:
        await eng.load(CHAT_MODEL)
        await eng.load(EMBEDDING_MODEL)
        # The governor counts the weights as loading measured them (the active-memory delta,
        # which moves by ~10 MiB with what this process's other engines were doing): the
        # room the tests size their requests against is HEADROOM beside that.
        eng.governor.budget_bytes = eng.governor.weights_bytes() + HEADROOM
        yield eng


def chat_runner(engine: Engine) -> Any:
    loaded = engine.pool.get(CHAT_MODEL)
    assert loaded is not None
    return loaded.runner


async def prompt_of(engine: Engine, tokens: int, salt: str = "") -> list[int]:
    """A prompt of exactly `tokens` token ids (a sentence repeated, cut); `salt` first makes
    one that no other test's prompt cache entry starts like."""
    text = salt + "The quick brown fox jumps over the lazy dog. " * (tokens // 8 + 1)
    return (await engine.tokenize(text))[:tokens]


async def settled(engine: Engine) -> Any:
    """The chat runner once nothing runs, waits or holds KV: a request an earlier test cancelled
    leaves at the worker's next step, and its reservation with it."""
    runner = chat_runner(engine)
    await until(
        lambda: engine.status().memory.kv_bytes == 0 and runner.urgency() is None,
        what="the engine idle after the earlier tests",
    )
    return runner


def free_room(engine: Engine) -> int:
    g = engine.governor
    return g.budget_bytes - g.weights_bytes()


async def test_the_budget_counts_weights_kv_and_prompt_cache(tight: Engine) -> None:
    runner = await settled(tight)
    # measured, and equal to what the model's shape says (layers x kv heads x head dim x K,V x f32)
    args = runner.model.args
    per_token = args.num_hidden_layers * args.num_key_value_heads * 2 * 4
    per_token *= args.hidden_size // args.num_attention_heads
    assert runner.admission.per_token == per_token
    first = asyncio.create_task(
        # salted: a longer cached entry of the same text would bring its larger KV buffer
        tight.complete(
            GenerateRequest(prompt=await prompt_of(tight, 20, "Budget: "), max_tokens=200)
        )
    )
    await until(lambda: tight.status().memory.kv_bytes > 0)
    memory = tight.status().memory
    assert memory.kv_bytes == per_token * KV_STEP  # 20 + 200 tokens: one step of 256
    assert memory.models_bytes == tight.pool.used_bytes
    assert memory.used_bytes == memory.models_bytes + memory.kv_bytes + memory.prompt_cache_bytes
    assert memory.used_bytes <= memory.budget_bytes
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await until(lambda: tight.status().memory.kv_bytes == 0)


async def test_a_request_whose_kv_exceeds_the_budget_fails_alone(tight: Engine) -> None:
    """KV for 1,024 tokens (45 MiB) never fits the 24 MiB left beside the weights: refused at
    once with a message that says what to do, while a small chat streams beside it."""
    prompt = await prompt_of(tight, 16)
    small = asyncio.create_task(tight.complete(GenerateRequest(prompt=prompt, max_tokens=6)))
    big = await tight.complete(GenerateRequest(prompt=prompt, max_tokens=1000))
    assert big.finish_reason == "error" and big.error_code == "insufficient_memory"
    assert big.completion_tokens == 0
    assert "max_tokens" in (big.error or "") and "MiB" in (big.error or "")
    error = result_error(big)
    assert isinstance(error, InsufficientMemory) and error.code == "insufficient_memory"
    done = await small
    assert done.finish_reason == "length" and done.completion_tokens == 6
    assert tight.status().memory.refused_requests >= 1


async def test_over_budget_is_a_503_on_http_and_the_port_keeps_serving(tight: Engine) -> None:
    """The memory refusal has one answer everywhere: 503 `insufficient_memory` (the request is
    valid; the server's memory budget is short), naming the field that would make it fit."""
    server = await serve_http(tight, "127.0.0.1", 0)
    try:

        def chat(max_tokens: int) -> tuple[int, dict[str, Any]]:
            body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
            status, _, raw = request(
                server.port, "POST", "/v1/chat/completions", orjson.dumps(body)
            )
            return status, orjson.loads(raw)

        status, body = await asyncio.to_thread(chat, 2000)
        assert status == 503, body
        assert body["error"]["code"] == "insufficient_memory"
        assert body["error"]["param"] == "max_tokens"
        status, body = await asyncio.to_thread(chat, 2)
        assert status == 200 and body["choices"][0]["finish_reason"] == "length"
    finally:
        await server.stop()


async def test_a_request_that_fits_only_alone_waits_for_memory(tight: Engine) -> None:
    """Two requests whose KV fills most of the room beside the weights (about 22 MiB each) do
    not fit together: the second waits in the queue (not refused) until the first ends, then
    runs. Their size comes from the room the weights, as measured, leave."""
    runner = await settled(tight)
    prompt = await prompt_of(tight, 16)
    step = runner.admission.per_token * KV_STEP
    kv_steps = free_room(tight) // step  # the most KV steps one request can hold
    assert kv_steps >= 1
    max_tokens = kv_steps * KV_STEP - len(prompt)  # 2 x steps never fits: 2 * floor(x) > x
    first_tokens: list[str] = []

    async def first() -> Result:
        async for event in tight.generate(GenerateRequest(prompt=prompt, max_tokens=max_tokens)):
            if isinstance(event, Delta):
                first_tokens.append(event.text)
            else:
                return event
        raise AssertionError("no result")

    a = asyncio.create_task(first())
    await until(lambda: bool(first_tokens))
    b = asyncio.create_task(tight.complete(GenerateRequest(prompt=prompt, max_tokens=max_tokens)))
    await until(lambda: sum(runner.waiting.counts().values()) == 1)
    steps = runner.generated_tokens
    await until(lambda: runner.generated_tokens >= steps + 3)  # the first decodes meanwhile
    assert sum(runner.waiting.counts().values()) == 1 and not b.done()
    assert tight.status().memory.kv_bytes <= free_room(tight)
    a.cancel()
    started = runner.generated_tokens
    await until(lambda: runner.generated_tokens >= started + 2 and not runner.waiting)
    b.cancel()
    await asyncio.gather(a, b, return_exceptions=True)
    await settled(tight)


async def test_prompt_caches_are_evicted_to_admit_a_request(tight: Engine) -> None:
    """Prompt caches are a speed-up: under a tight budget the least recently used make room for
    a new request instead of it waiting, so the budget is never passed and the newest prompt is
    still reused. (Each 200-token prompt keeps ~9 MiB of KV; a request reserves 11.25 MiB.)"""
    runner = await settled(tight)
    runner.prompt_cache.trim_to(n_sequences=0)
    body = await prompt_of(tight, 199)
    prompts = [[7 + i, *body] for i in range(3)]  # three different 200-token prompts
    evicted = tight.status().memory.evicted_prompt_cache_bytes
    for prompt in prompts:
        await tight.complete(GenerateRequest(prompt=prompt, max_tokens=1))
        memory = tight.status().memory
        assert memory.used_bytes <= memory.budget_bytes
        assert memory.prompt_cache_bytes > 0
    assert tight.status().memory.evicted_prompt_cache_bytes > evicted
    newest = await tight.complete(GenerateRequest(prompt=[*prompts[-1], 11], max_tokens=1))
    assert newest.cached_prompt_tokens >= 199  # the newest prompt's KV was kept ...
    oldest = await tight.complete(GenerateRequest(prompt=[*prompts[0], 11], max_tokens=1))
    assert oldest.cached_prompt_tokens == 0  # ... the oldest gave way


async def test_a_finished_request_keeps_its_kv_where_only_its_reservation_fits(
    tight: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The KV a finished request leaves as a prompt cache is the memory its reservation held,
    not more: with room for one request's reservation and nothing beside it, the finished
    request's prompt cache (~9 MiB of the 11.25 MiB reserved) is kept, not evicted as if both
    were held at once."""
    runner = await settled(tight)
    runner.prompt_cache.trim_to(n_sequences=0)
    prompt = await prompt_of(tight, 200, "Reservation: ")
    need = runner.admission.per_token * KV_STEP  # 200 + 1 tokens: one step of 256
    budget = tight.governor.weights_bytes() + need + MiB
    monkeypatch.setattr(tight.governor, "budget_bytes", budget)
    done = await tight.complete(GenerateRequest(prompt=prompt, max_tokens=1))
    assert done.finish_reason == "length"
    memory = tight.status().memory
    assert 0 < memory.prompt_cache_bytes <= need
    assert memory.used_bytes <= memory.budget_bytes


async def test_an_allocation_failure_fails_its_batch_and_the_engine_serves_on(
    tight: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLX on Metal raises this RuntimeError when a buffer cannot be had (on this CPU backend a
    failed allocation is a segfault, measured, so the step raises it here on purpose): the
    decoding request fails with `out_of_memory`, the chat queued behind it and an embedding on
    another model carry on, and the next request on the same model runs."""
    runner = await settled(tight)
    prompt = await prompt_of(tight, 12)
    oom = RuntimeError(
        "[metal::malloc] Attempting to allocate 68719476736 bytes which is greater than the "
        "maximum allowed buffer size of 28991029248 bytes."
    )
    assert is_allocation_failure(oom)
    real_next = runner.generator.next
    failed = False

    def next_step() -> Any:
        nonlocal failed
        if not failed and runner.waiting:  # once the second chat is queued behind it
            failed = True
            raise oom
        return real_next()

    monkeypatch.setattr(runner.generator, "next", next_step)
    doomed = asyncio.create_task(tight.complete(GenerateRequest(prompt=prompt, max_tokens=50)))
    await until(lambda: bool(runner.running))
    queued = asyncio.create_task(tight.complete(GenerateRequest(prompt=prompt, max_tokens=3)))
    vectors = await tight.embed(["memory ran out next door"])
    assert len(vectors.vectors) == 1
    lost = await doomed
    assert lost.finish_reason == "error" and lost.error_code == "out_of_memory"
    assert "out of memory" in (lost.error or "")
    assert isinstance(result_error(lost), OutOfMemory)
    served = await queued
    assert served.finish_reason == "length" and served.completion_tokens == 3
    assert tight.worker.health_reason() is None


async def test_idle_unload_gives_memory_back(settings: Settings, tmp_path: Path) -> None:
    """Load, run, then let the idle TTL unload: MLX's active and cached memory and the
    process's RSS fall back by most of what the load took (measured here, not a constant)."""
    import os

    gc.collect()
    mx.clear_cache()
    idle = settings.model_copy(update={"idle_ttl_s": 1.0})
    async with Engine(idle) as eng:
        rss_before = rss_of(os.getpid()) or 0
        active_before = mx.get_active_memory()
        await eng.load(CHAT_MODEL)
        await eng.complete(GenerateRequest(prompt="Memory test", max_tokens=4))
        rss_loaded = rss_of(os.getpid()) or 0
        loaded_active = mx.get_active_memory() - active_before
        size = eng.pool.used_bytes
        assert loaded_active >= size * 0.9
        # the pool logs the unload once its memory is handed back
        await until(lambda: any(e.startswith("unload") for e in eng.pool.events), timeout=30)
        assert not eng.pool.models
        active_after = mx.get_active_memory() - active_before
        rss_after = rss_of(os.getpid()) or 0
    assert active_after < loaded_active * 0.1
    assert mx.get_cache_memory() < size * 0.1
    # glibc keeps freed heap unless trimmed: without malloc_trim only ~20 % came back
    assert rss_loaded - rss_after > (rss_loaded - rss_before) * 0.8


async def test_kept_prompt_caches_hold_only_what_they_count(engine: Engine) -> None:
    """A cache taken out of a batch used to be a lazy slice pinning the whole batch's KV: after
    8 concurrent chats MLX held 243 MiB where the prompt cache counted 12. What the budget
    counts is what is held now."""
    loaded = engine.pool.get(CHAT_MODEL)
    assert loaded is not None
    runner: Any = loaded.runner

    def forget() -> None:
        runner.prompt_cache.trim_to(n_sequences=0)
        gc.collect()
        mx.clear_cache()

    await engine._on_worker(forget)
    before = mx.get_active_memory()
    await asyncio.gather(
        *(
            engine.complete(GenerateRequest(prompt=f"Note {i} about caches:", max_tokens=24))
            for i in range(8)
        )
    )
    await engine._on_worker(lambda: mx.clear_cache())
    held = mx.get_active_memory() - before
    counted = runner.prompt_cache.nbytes
    assert len(runner.prompt_cache) == 8 and counted > 0
    assert held <= counted * 1.5 + 4 * MiB, (held / MiB, counted / MiB)

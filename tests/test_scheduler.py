"""Completion first: a keystroke's completion never waits behind chat prefill, a full batch,
embeddings; streams keep decoding meanwhile. Real SmolLM2 and MiniLM; every bound is a
multiple of a decode step measured in the same test, never a wall-clock constant."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.engine.requests import Delta, GenerateRequest, Priority, Result
from sidecar.models.defaults import CHAT_MODEL, EMBEDDING_MODEL
from tests.helpers.waiting import until

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi"


@dataclass
class Stream:
    """One request's events with their arrival times."""

    submitted: float = field(default_factory=time.perf_counter)
    token_times: list[float] = field(default_factory=list)
    result: Result | None = None

    @property
    def first_token_s(self) -> float:
        return self.token_times[0] - self.submitted

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.token_times, self.token_times[1:], strict=False)]


async def follow(engine: Engine, request: GenerateRequest, stream: Stream) -> Stream:
    async for event in engine.generate(request):
        if isinstance(event, Delta):
            stream.token_times.append(time.perf_counter())
        else:
            stream.result = event
    return stream


def start(engine: Engine, request: GenerateRequest) -> tuple[Stream, asyncio.Task[Stream]]:
    stream = Stream()
    return stream, asyncio.create_task(follow(engine, request, stream))


def text_prompt(n_words: int, salt: str) -> str:
    words = WORDS.split()
    return salt + " " + " ".join(words[i % len(words)] for i in range(n_words))


async def step_time(engine: Engine) -> float:
    """A decode step of one stream, measured now: the median gap between its tokens."""
    prompt = await engine.tokenize("The list of numbers: 1, 2, 3,")
    _, task = start(engine, GenerateRequest(prompt=prompt, max_tokens=16))
    stream = await task
    return statistics.median(stream.gaps())


@pytest.fixture(scope="module")
async def small_engine(settings: Settings) -> AsyncIterator[Engine]:
    """An engine whose batch holds 8 sequences."""
    async with Engine(settings.model_copy(update={"max_batch": 8})) as eng:
        await eng.load(CHAT_MODEL)
        yield eng


async def test_completion_first_token_arrives_while_a_long_chat_prompt_prefills(
    engine: Engine,
) -> None:
    chat_prompt = await engine.tokenize(text_prompt(420, "chat"))  # ~800 tokens: many chunks
    completion_prompt = await engine.tokenize("def add(a, b):\n    return")
    chat, chat_task = start(engine, GenerateRequest(prompt=chat_prompt, max_tokens=2))
    await until(lambda: engine.status().queue_depth > 0 or chat.token_times, timeout=120)
    assert not chat.token_times, "the chat prompt should still be prefilling"
    completion, completion_task = start(
        engine,
        GenerateRequest(prompt=completion_prompt, max_tokens=3, priority=Priority.COMPLETION),
    )
    await asyncio.gather(chat_task, completion_task)
    assert completion.token_times and chat.token_times
    # The completion went ahead of the chat's remaining prefill chunks.
    assert completion.token_times[0] < chat.token_times[0]
    assert completion.result is not None and completion.result.finish_reason == "length"
    assert chat.result is not None and chat.result.completion_tokens == 2


async def test_completion_is_admitted_at_the_next_step_with_a_full_batch(
    small_engine: Engine,
) -> None:
    step = await step_time(small_engine)
    chats = [
        start(
            small_engine,
            GenerateRequest(prompt=await small_engine.tokenize(f"Story {i}:"), max_tokens=400),
        )
        for i in range(8)
    ]
    await until(lambda: all(len(s.token_times) >= 2 for s, _ in chats), timeout=120)
    prompt = await small_engine.tokenize("x = 1\ny =")
    completion, task = start(
        small_engine, GenerateRequest(prompt=prompt, max_tokens=2, priority=Priority.COMPLETION)
    )
    await task
    try:
        assert all(t.done() is False for _, t in chats), "the chats should still be running"
        # The step in progress when it arrives, the prefill of a few tokens, its first
        # forward, two decode steps of the batch of 9: a handful of steps, not the ~400
        # until a chat frees its slot.
        batch_step = statistics.median(g for s, _ in chats for g in s.gaps()[-5:])
        assert completion.first_token_s < 10 * max(step, batch_step)
        assert small_engine.status().max_batch_seen == 9
    finally:
        for _, t in chats:
            t.cancel()
        await asyncio.gather(*(t for _, t in chats), return_exceptions=True)


async def test_a_cancelled_waiting_request_is_answered_at_once(small_engine: Engine) -> None:
    step = await step_time(small_engine)
    chats = [
        start(
            small_engine,
            GenerateRequest(prompt=await small_engine.tokenize(f"Tale {i}:"), max_tokens=400),
        )
        for i in range(8)
    ]
    await until(lambda: all(s.token_times for s, _ in chats), timeout=120)
    waiting = GenerateRequest(prompt=await small_engine.tokenize("Ninth:"), max_tokens=4)
    stream, task = start(small_engine, waiting)
    await until(lambda: small_engine.status().queue_depth == 1, timeout=120)  # no room: it waits
    try:
        asked = time.perf_counter()
        assert small_engine.cancel(waiting.request_id)
        await asyncio.wait_for(task, timeout=30)
        answered = time.perf_counter() - asked
        assert stream.result is not None and stream.result.finish_reason == "cancelled"
        assert answered < step / 2  # without waiting for the worker's next step
    finally:
        for _, t in chats:
            t.cancel()
        await asyncio.gather(*(t for _, t in chats), return_exceptions=True)


async def test_chat_keeps_streaming_while_completions_keep_arriving(engine: Engine) -> None:
    before = await step_time(engine)
    chat_prompt = await engine.tokenize("The list of numbers: 1, 2, 3,")
    # More tokens than the completions below take steps: the chat outlives them on any machine
    # (no bet that it is still running); it is cancelled once they are done.
    chat, chat_task = start(engine, GenerateRequest(prompt=chat_prompt, max_tokens=1000))
    await until(lambda: len(chat.token_times) >= 2, timeout=120)
    began = time.perf_counter()
    for n in range(3):
        # ~600-token prompts that share nothing: each needs its own prefill (about 50 steps'
        # worth of compute, which the chat used to wait for in one piece).
        prompt = await engine.tokenize(text_prompt(300, f"file{n}"))
        _, task = start(
            engine, GenerateRequest(prompt=prompt, max_tokens=2, priority=Priority.COMPLETION)
        )
        await task
    ended = time.perf_counter()
    chat_task.cancel()
    await asyncio.gather(chat_task, return_exceptions=True)
    step = max(before, await step_time(engine))  # the slower of two readings: a loaded machine
    during = [t for t in chat.token_times if began <= t <= ended]
    assert len(during) >= 3, "the chat should have streamed while the completions ran"
    # Each completion prompt is prefilled a chunk per step with the chat decoding between:
    # the chat's longest wait is a few steps, not a whole prompt.
    gaps = [b - a for a, b in zip(during, during[1:], strict=False)]
    assert max(gaps) < 15 * step, (max(gaps), step)


async def test_a_large_embedding_job_does_not_stop_a_text_stream(engine: Engine) -> None:
    step = await step_time(engine)
    texts = [f"sentence number {i} about {WORDS.split()[i % 16]}" for i in range(240)]
    chat_prompt = await engine.tokenize("The odd numbers: 1, 3, 5,")
    chat, chat_task = start(engine, GenerateRequest(prompt=chat_prompt, max_tokens=40))
    await until(lambda: len(chat.token_times) >= 2, timeout=120)
    job = asyncio.create_task(engine.embed(texts, EMBEDDING_MODEL))
    query = await engine.embed(["a short query"], EMBEDDING_MODEL)  # a query goes first
    assert len(query.vectors) == 1 and not job.done()
    result = await job
    during_job = len(chat.token_times)
    await chat_task
    assert len(result.vectors) == 240
    assert during_job > 2, "the chat should have decoded while the job ran"
    # The job runs a slice at a time between decode steps.
    assert max(chat.gaps()) < 5 * step, (max(chat.gaps()), step)


async def test_status_and_metrics_show_queue_wait_per_class_and_token_gaps(
    engine: Engine,
) -> None:
    from collections import Counter

    from sidecar.http.metrics import render

    def completion_waits() -> int:
        return engine.status().queue_wait_s["completion"].count

    before = completion_waits()
    prompt = await engine.tokenize("for i in range(")
    result = await engine.complete(
        GenerateRequest(prompt=prompt, max_tokens=3, priority=Priority.COMPLETION)
    )
    assert completion_waits() == before + 1
    assert result.max_token_gap_s is not None and result.max_token_gap_s > 0
    text = render(engine, Counter())
    assert f'mlx_sidecar_queue_wait_seconds_count{{class="completion"}} {before + 1}' in text
    assert 'mlx_sidecar_queue_depth{class="completion"} 0' in text
    assert "mlx_sidecar_token_gap_seconds{quantile=" in text

"""The batched engine on the real default models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import numpy as np
import pytest
from mlx_lm import generate

from sidecar.engine.engine import Engine
from sidecar.engine.requests import Delta, GenerateRequest, Result
from sidecar.errors import EngineError, ModelNotFoundError, PromptTooLongError
from sidecar.models.defaults import CHAT_MODEL
from tests.helpers.prompts import chat_prompt
from tests.helpers.waiting import reset_batch_peaks, until

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


async def run(engine: Engine, request: GenerateRequest) -> tuple[list[Delta], Result]:
    deltas, result = [], None
    async for event in engine.generate(request):
        if isinstance(event, Delta):
            deltas.append(event)
        else:
            result = event
    assert result is not None
    return deltas, result


async def test_chat_answer_streams_and_deltas_concatenate(engine: Engine) -> None:
    prompt = await chat_prompt(engine, QUESTION)
    deltas, result = await run(engine, GenerateRequest(prompt=prompt, max_tokens=16))
    assert result.text == "The capital of France is Paris."
    assert "".join(d.text for d in deltas) == result.text
    assert len(deltas) > 3  # streamed token by token, not in one piece
    # Ended on the model's stop token (<|im_end|>), which never shows in the text.
    assert result.finish_reason == "stop"
    assert "<|im_end|>" not in result.text
    assert result.prompt_tokens == len(prompt)
    assert result.time_to_first_token_s is not None and result.time_to_first_token_s > 0


async def test_max_tokens_limits_output(engine: Engine) -> None:
    prompt = await chat_prompt(engine, QUESTION)
    result = await engine.complete(GenerateRequest(prompt=prompt, max_tokens=3))
    assert result.finish_reason == "length"
    assert result.completion_tokens == 3
    assert result.text == "The capital of"


async def test_stop_string_cuts_text_and_never_leaks_partially(engine: Engine) -> None:
    prompt = await chat_prompt(engine, QUESTION)
    deltas, result = await run(
        engine, GenerateRequest(prompt=prompt, max_tokens=16, stop=["of France", "zzz"])
    )
    assert result.text == "The capital "
    assert result.finish_reason == "stop"
    assert "".join(d.text for d in deltas) == result.text


async def test_seed_makes_sampling_reproducible(engine: Engine) -> None:
    prompt = await engine.tokenize("Once upon a time")

    def req(seed: int) -> GenerateRequest:
        return GenerateRequest(prompt=prompt, max_tokens=12, temperature=1.0, seed=seed)

    a, b, c = await asyncio.gather(
        engine.complete(req(7)), engine.complete(req(7)), engine.complete(req(8))
    )
    assert a.text == b.text
    assert a.text != c.text


async def test_eight_concurrent_requests_match_their_solo_greedy_output(engine: Engine) -> None:
    questions = [
        "What is the capital of France?",
        "Name a color.",
        "What is 2+2?",
        "Say hello.",
        "Name a fruit.",
        "What is water made of?",
        "Name a planet.",
        "Count to three.",
    ]
    prompts = [await chat_prompt(engine, [{"role": "user", "content": q}]) for q in questions]
    solo = [
        (await engine.complete(GenerateRequest(prompt=p, max_tokens=8))).text for p in prompts[:3]
    ]
    reset_batch_peaks(engine)
    together = await asyncio.gather(
        *[engine.complete(GenerateRequest(prompt=p, max_tokens=8)) for p in prompts]
    )
    assert all(r.finish_reason in ("stop", "length") for r in together)
    assert [r.text for r in together[:3]] == solo
    assert engine.status().max_batch_seen >= 2


async def test_cancel_mid_generation_leaves_others_unaffected(engine: Engine) -> None:
    story = await chat_prompt(engine, [{"role": "user", "content": "Write a long story."}])
    short = await chat_prompt(engine, QUESTION)
    victim = GenerateRequest(prompt=story, max_tokens=200)

    async def cancel_after_two_deltas() -> Result:
        seen = 0
        result = None
        async for event in engine.generate(victim):
            if isinstance(event, Delta):
                seen += 1
                if seen == 2:
                    assert engine.cancel(victim.request_id)
            else:
                result = event
        assert result is not None
        return result

    cancelled, other = await asyncio.gather(
        cancel_after_two_deltas(), engine.complete(GenerateRequest(prompt=short, max_tokens=16))
    )
    assert cancelled.finish_reason == "cancelled"
    assert cancelled.completion_tokens < 20
    assert other.text == "The capital of France is Paris."
    await until(lambda: engine.status().running == 0, timeout=5)


async def test_abandoned_stream_frees_its_slot(engine: Engine) -> None:
    prompt = await chat_prompt(engine, [{"role": "user", "content": "Write a long story."}])
    stream = engine.generate(GenerateRequest(prompt=prompt, max_tokens=200))
    async for _ in stream:
        break
    assert isinstance(stream, AsyncGenerator)  # `generate` is an async generator
    await stream.aclose()
    await until(lambda: engine.status().running == 0, timeout=5)


async def test_bad_requests_fail_alone(engine: Engine) -> None:
    prompt = await chat_prompt(engine, QUESTION)
    good = asyncio.create_task(engine.complete(GenerateRequest(prompt=prompt, max_tokens=8)))
    with pytest.raises(EngineError, match="max_tokens"):
        await engine.complete(GenerateRequest(prompt=prompt, max_tokens=0))
    with pytest.raises(EngineError, match="empty"):
        await engine.complete(GenerateRequest(prompt="", max_tokens=4))
    with pytest.raises(PromptTooLongError, match="context"):
        await engine.complete(GenerateRequest(prompt=[1] * 9000, max_tokens=4))
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        await engine.complete(GenerateRequest(prompt="hi", model="no-such-model"))
    with pytest.raises(EngineError, match="embedding model"):
        await engine.complete(GenerateRequest(prompt="hi", model="all-MiniLM-L6-v2"))
    assert (await good).text == "The capital of France is Paris."


async def test_embeddings_are_normalized_and_meaningful(engine: Engine) -> None:
    texts = [
        "A man is playing a guitar.",
        "Someone plays an acoustic guitar.",
        "The stock market fell sharply today.",
    ]
    result = await engine.embed(texts)
    v = np.array(result.vectors)
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    assert result.prompt_tokens > 0


async def test_concurrent_embeddings_are_batched_and_agree_with_single(engine: Engine) -> None:
    texts = [f"Sentence {i} about the weather." for i in range(6)]
    singles = [np.array((await engine.embed([t])).vectors[0]) for t in texts[:2]]
    reset_batch_peaks(engine)
    together = await asyncio.gather(*[engine.embed([t]) for t in texts])
    for single, batched in zip(singles, together[:2], strict=True):
        assert np.allclose(single, batched.vectors[0], atol=1e-4)
    assert engine.status().max_embed_batch_seen > 1
    with pytest.raises(EngineError, match="non-empty list"):
        await engine.embed([])


async def test_raw_continuation_keeps_its_leading_space(engine: Engine) -> None:
    # A completion is pasted right after the prompt: "is" + " Paris", never "isParis".
    result = await engine.complete(GenerateRequest(prompt="The capital of France is", max_tokens=2))
    assert result.text.startswith(" ")
    assert result.text.strip() != ""


async def test_prompt_cache_reuses_a_shared_prefix_without_changing_output(engine: Engine) -> None:
    # The editor's case: each keystroke's completion prompt extends the previous one.
    code = "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fib"
    first = await engine.complete(GenerateRequest(prompt=code, max_tokens=4))
    again = await engine.complete(GenerateRequest(prompt=code + "onacci", max_tokens=4))
    assert first.prompt_tokens > 10
    assert again.cached_prompt_tokens >= first.prompt_tokens - 2
    # Same greedy output as plain mlx_lm computing the whole prompt from scratch.
    loaded = await engine.load("SmolLM2-135M-Instruct")
    expected = await asyncio.wrap_future(
        engine.worker.call(
            lambda: generate(loaded.model, loaded.tokenizer, code + "onacci", max_tokens=4)
        )
    )
    assert again.text.strip() == expected.strip()


async def test_negative_seed_samples_and_finishes(engine: Engine) -> None:
    """A negative seed (int64, e.g. -1) used to hang the request forever: the sampler was built
    after the sequence left the queue, outside the error path."""
    prompt = await engine.tokenize("Once upon a time")
    req = GenerateRequest(prompt=prompt, max_tokens=4, temperature=0.7, seed=-1)
    result = await asyncio.wait_for(engine.complete(req), 60)
    assert result.finish_reason == "length" and result.completion_tokens == 4
    again = await engine.complete(
        GenerateRequest(prompt=prompt, max_tokens=4, temperature=0.7, seed=-1)
    )
    assert again.text == result.text  # the same seed, the same text


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1])
async def test_seed_out_of_64_bits_is_refused(engine: Engine, seed: int) -> None:
    prompt = await engine.tokenize("Once upon a time")
    with pytest.raises(EngineError, match="seed"):
        await engine.complete(GenerateRequest(prompt=prompt, max_tokens=2, seed=seed))


@pytest.mark.parametrize("bad", [10_000_000, 49152, -1])
async def test_token_ids_outside_the_vocabulary_are_refused(engine: Engine, bad: int) -> None:
    """An id past the embedding table used to segfault the whole process."""
    with pytest.raises(EngineError, match="token id"):
        await engine.complete(GenerateRequest(prompt=[1, bad], max_tokens=1))
    ok = await engine.complete(GenerateRequest(prompt=[1, 49151], max_tokens=1))
    assert ok.finish_reason in ("length", "stop")


@pytest.mark.parametrize("failing", ["sampler", "prompt_cache", "insert"])
async def test_each_admission_failure_fails_its_request_alone_and_at_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """Everything between leaving the queue and joining the batch is inside the error path:
    a failure there answers that request with an error (it used to hang when the sampler
    failed), and the next request runs."""
    from sidecar.engine import text_runner

    loaded = engine.pool.get(CHAT_MODEL)
    assert loaded is not None
    runner = loaded.runner

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"{failing} broke")

    prompt = await engine.tokenize(f"An admission test for {failing}:")
    if failing == "sampler":
        monkeypatch.setattr(text_runner, "make_request_sampler", boom)
    elif failing == "prompt_cache":
        monkeypatch.setattr(runner.prompt_cache, "fetch_nearest_cache", boom)
    else:
        monkeypatch.setattr(runner.generator, "insert", boom)
    result = await asyncio.wait_for(
        engine.complete(GenerateRequest(prompt=prompt, max_tokens=2)), 30
    )
    assert result.finish_reason == "error" and f"{failing} broke" in (result.error or "")
    monkeypatch.undo()
    after = await engine.complete(GenerateRequest(prompt=prompt, max_tokens=2))
    assert after.finish_reason == "length" and after.completion_tokens == 2


async def test_a_limit_over_the_context_is_an_error_not_a_shrunk_limit(engine: Engine) -> None:
    """An 8,191-token prompt used to cut max_tokens to 1 silently."""
    context = 8192  # SmolLM2's
    with pytest.raises(PromptTooLongError, match="over the model's context"):
        await engine.complete(GenerateRequest(prompt=[1] * (context - 4), max_tokens=10))

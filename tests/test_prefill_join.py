"""A burst of prompts costs about one batched prefill: prompts that arrive while their class's
prefill job runs join it at the next chunk instead of waiting for it to end; and every step keeps
to one token budget shared by the decode rows and the prefill job. Counted in worker steps and
tokens on a `TextRunner` driven directly (real SmolLM2), never in seconds."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlx_lm
import pytest

from sidecar.engine.detokenize import exact_detokenizer
from sidecar.engine.prefill import STEP_BUDGET_CHUNKS
from sidecar.engine.requests import GenerateRequest, Priority
from sidecar.engine.sequence import Sequence
from sidecar.engine.text_runner import TextRunner
from sidecar.models.defaults import CHAT_MODEL

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi"
CHUNK = 32
BUDGET = STEP_BUDGET_CHUNKS * CHUNK  # tokens one step computes at most


@pytest.fixture(scope="module")
def smol(models_dir: Path) -> tuple[Any, Any]:
    model, tokenizer = mlx_lm.load(str(models_dir / CHAT_MODEL))[:2]
    return model, tokenizer


@pytest.fixture
def runner(smol: tuple[Any, Any]) -> Iterator[TextRunner]:
    model, tokenizer = smol
    runner = TextRunner(CHAT_MODEL, model, tokenizer, max_batch=16, prefill_chunk=CHUNK)
    yield runner
    runner.close()


def sequence(
    tokenizer: Any, salt: int, priority: Priority = Priority.CHAT, max_tokens: int = 2
) -> Sequence:
    words = WORDS.split()
    text = f"{salt}: " + " ".join(words[(i * 7 + salt) % len(words)] for i in range(120))
    request = GenerateRequest(prompt=text, max_tokens=max_tokens, priority=priority)
    return Sequence(
        request=request,
        model_id=CHAT_MODEL,
        prompt_tokens=tokenizer.encode(text),
        detokenizer=exact_detokenizer(tokenizer),
        sink=lambda event: None,
        tokenizer=tokenizer,
    )


def steps_until_first_tokens(runner: TextRunner, seqs: list[Sequence], jobs: set[int]) -> int:
    steps = 0
    while not all(s.first_token_at or s.done for s in seqs):
        assert steps < 200, "the prompts never reached their first token"
        runner.step()
        jobs.update(id(j) for j in runner.jobs)
        steps += 1
    return steps


def test_prompts_arriving_during_a_prefill_join_it(
    smol: tuple[Any, Any], runner: TextRunner
) -> None:
    tokenizer = smol[1]
    first = sequence(tokenizer, 0)
    runner.submit(first)
    runner.step()  # its job has started: one chunk computed
    assert len(runner.jobs) == 1 and first.started_at is not None
    burst = [sequence(tokenizer, i) for i in range(1, 8)]
    for seq in burst:
        runner.submit(seq)
    jobs = {id(runner.jobs[0])}
    steps = 1 + steps_until_first_tokens(runner, [first, *burst], jobs)
    # One prompt alone needs a step per chunk; waiting for the first job to end would double
    # it. (+3: the first prompt decodes for the last steps, and its row shares the budget.)
    alone = max(math.ceil((len(s.prompt_tokens) - 1) / CHUNK) for s in [first, *burst])
    assert steps <= alone + 3, (steps, alone)
    assert len(jobs) == 1, "the burst should have joined the running prefill job"
    assert all(s.first_token_at for s in [first, *burst])


def test_a_more_urgent_prompt_does_not_join_a_less_urgent_job(
    smol: tuple[Any, Any], runner: TextRunner
) -> None:
    """A completion arriving during a chat's prefill gets a job of its own that goes first."""
    tokenizer = smol[1]
    chat = sequence(tokenizer, 20)
    runner.submit(chat)
    runner.step()
    completion = sequence(tokenizer, 21, Priority.COMPLETION)
    runner.submit(completion)
    jobs: set[int] = set()
    steps_until_first_tokens(runner, [completion], jobs)
    assert chat.first_token_at is None, "the chat's prefill should have paused for it"
    assert len(jobs) == 2


def test_decode_rows_and_a_burst_share_each_steps_token_budget(
    smol: tuple[Any, Any], runner: TextRunner
) -> None:
    """Four chats stream while eight long prompts arrive: every step computes at most the
    budget's tokens (each streaming row one, the burst the rest), so every streaming row gets
    a token in every step while the burst prefills, and the burst still starts at about the
    budget's pace."""
    tokenizer = smol[1]
    streams = [sequence(tokenizer, 40 + i, max_tokens=200) for i in range(4)]
    for seq in streams:
        runner.submit(seq)
    steps_until_first_tokens(runner, streams, set())
    burst = [sequence(tokenizer, 50 + i) for i in range(8)]
    for seq in burst:
        runner.submit(seq)
    steps = 0
    while not all(s.first_token_at or s.done for s in burst):
        assert steps < 200, "the burst never reached its first tokens"
        decoding = [s for s in streams if not s.done]
        counts = [s.completion_tokens for s in decoding]
        prefilled = runner.prefilled_tokens
        runner.step()
        steps += 1
        computed = runner.prefilled_tokens - prefilled
        assert computed <= BUDGET - len(decoding), (steps, computed, len(decoding))
        for seq, before in zip(decoding, counts, strict=True):
            assert seq.done or seq.completion_tokens > before, "a streaming row missed a step"
    tokens = sum(len(s.prompt_tokens) - 1 for s in burst)
    assert steps <= math.ceil(tokens / (BUDGET - len(streams))) + 2, (steps, tokens)

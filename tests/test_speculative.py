"""Prompt-lookup speculative decoding: a greedy completion decoding alone checks drafts copied
from its own context; the output is plain greedy output, token for token."""

from __future__ import annotations

import asyncio

from sidecar.engine.engine import Engine
from sidecar.engine.requests import GenerateRequest, Priority
from sidecar.engine.speculative import find_draft
from sidecar.models.defaults import CHAT_MODEL
from tests.helpers.prompts import REPEATING_CODE as CODE


def test_the_draft_is_what_followed_the_latest_match_of_the_last_tokens() -> None:
    tokens = [5, 6, 7, 1, 2, 9, 9, 5, 6, 7, 3, 4, 8, 5, 6, 7]
    assert find_draft(tokens, 3) == [3, 4, 8]  # the latest earlier "5 6 7", not the first
    assert find_draft([1, 2, 3, 4], 4) == []  # nothing repeats
    assert find_draft([4, 1, 2, 3, 1, 2], 2) == [3, 1]  # a two-token match


async def run(engine: Engine, prompt: list[int], speculative: bool) -> tuple[str, int, int]:
    loaded = engine.pool.get(CHAT_MODEL)
    assert loaded is not None
    runner = loaded.runner
    runner.lane.enabled = speculative
    before = runner.accepted_tokens
    try:
        result = await engine.complete(
            GenerateRequest(prompt=prompt, max_tokens=40, priority=Priority.COMPLETION)
        )
    finally:
        runner.lane.enabled = True
    return result.text, result.completion_tokens, runner.accepted_tokens - before


async def test_speculative_greedy_output_equals_plain_greedy_output(engine: Engine) -> None:
    prompt = await engine.tokenize(CODE)
    plain = await run(engine, prompt, speculative=False)
    fast = await run(engine, prompt, speculative=True)
    assert fast[:2] == plain[:2]  # the same text, the same number of tokens
    assert plain[2] == 0
    assert fast[2] > 0, "drafts from the first function should have been accepted"


async def test_a_second_request_joins_and_both_outputs_stay_greedy(engine: Engine) -> None:
    """A completion speculating alone goes back into the batch when another request arrives;
    neither output changes."""
    code = await engine.tokenize(CODE)
    story = await engine.tokenize("The numbers: 1, 2, 3,")
    alone_code = await run(engine, code, speculative=False)
    alone_story = (await engine.complete(GenerateRequest(prompt=story, max_tokens=12))).text
    first = asyncio.create_task(
        engine.complete(GenerateRequest(prompt=code, max_tokens=40, priority=Priority.COMPLETION))
    )
    loaded = engine.pool.get(CHAT_MODEL)
    assert loaded is not None
    runner = loaded.runner
    while runner.solo is None and not first.done():  # speculating alone
        await asyncio.sleep(0.01)
    second = await engine.complete(GenerateRequest(prompt=story, max_tokens=12))
    done = await first
    assert (done.text, done.completion_tokens) == alone_code[:2]
    assert second.text == alone_story

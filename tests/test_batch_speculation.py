"""Prompt-lookup speculation inside the decode batch: greedy rows check drafts copied from their
own context in the batch's own step, each row accepting what it can; every output is plain
decoding's, token for token, beside sampled and constrained rows."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import cast

import mlx.core as mx
import pytest
from mlx_lm.models.cache import BatchKVCache

from sidecar.engine.batch_speculation import STRIP_PADDING, drop_tails
from sidecar.engine.engine import Engine
from sidecar.engine.requests import GenerateRequest
from sidecar.engine.text_runner import TextRunner
from sidecar.models.defaults import CHAT_MODEL
from tests.helpers.prompts import REPEATING_CODE as CODE

OTHER = """class Stack:
    def push(self, item):
        self.items.append(item)

    def pop(self):
        return self.items.pop()

    def peek(self):
"""


def test_each_row_drops_its_own_rejected_tail() -> None:
    """Three rows of a batch KV, 0, 1 and 2 entries dropped: each row keeps exactly its first
    entries, and the next entry lands right after them."""
    cache = BatchKVCache([2, 0, 1])  # rows of 3, 5 and 4 prompt entries
    first = mx.arange(3 * 1 * 5 * 2, dtype=mx.float32).reshape(3, 1, 5, 2)
    cache.update_and_fetch(first, first + 1000)
    draft = mx.full((3, 1, 3, 2), -1.0)  # three verified positions per row
    cache.update_and_fetch(draft, draft)
    drop_tails([cache], [0, 1, 2])
    newest = mx.full((3, 1, 1, 2), 7.0)
    cache.update_and_fetch(newest, newest)
    for row, (pad, dropped) in enumerate(zip([2, 0, 1], [0, 1, 2], strict=True)):
        kept = cache.extract(row)
        keys = kept.keys[0, 0]
        prompt = cast(list[list[float]], first[row, 0, pad:].tolist())
        expected = [*prompt, *[[-1.0, -1.0]] * (3 - dropped), [7.0, 7.0]]
        assert keys.tolist() == expected, f"row {row}"
        assert kept.values[0, 0, 0].tolist() == (first[row, 0, pad] + 1000).tolist()
    assert cache.offset.tolist() == [3 + 3 + 1, 5 + 2 + 1, 4 + 1 + 1]


def test_padding_every_row_has_leaves_the_kv() -> None:
    """Rejected tails pile up as left padding (rows take turns rejecting more); once every row
    has enough, it is cut off the KV, and each row still holds exactly its entries."""
    cache = BatchKVCache([0, 0])
    prompt = mx.arange(2 * 1 * 4 * 2, dtype=mx.float32).reshape(2, 1, 4, 2)
    cache.update_and_fetch(prompt, prompt)
    steps = 2 * STRIP_PADDING
    for step in range(steps):  # two draft positions a step; one row keeps one, the other none
        draft = mx.full((2, 1, 2, 2), float(step))
        cache.update_and_fetch(draft, draft)
        drop_tails([cache], [1, 2] if step % 2 == 0 else [2, 1])
    padding = cast(list[int], cache.left_padding.tolist())
    assert min(padding) < STRIP_PADDING, "the padding both rows had was cut off"
    assert cache._idx < 4 + steps, "the KV is shorter than every entry ever fed"
    for row in (0, 1):
        keys = cache.extract(row).keys[0, 0].tolist()
        kept = [[float(s)] * 2 for s in range(steps) if s % 2 == row]
        fed = cast(list[list[float]], prompt[row, 0].tolist())
        assert keys == [*fed, *kept], f"row {row}"


@pytest.fixture
def runner(engine: Engine) -> Iterator[TextRunner]:
    loaded = engine.pool.get(CHAT_MODEL)
    assert loaded is not None and isinstance(loaded.runner, TextRunner)
    runner = loaded.runner
    pays = runner.speculator.pays
    runner.speculator.pays = lambda rows: True  # type: ignore[method-assign]  # draft always
    yield runner
    runner.speculator.pays = pays  # type: ignore[method-assign]
    runner.lane.enabled = True


async def batch(engine: Engine, runner: TextRunner, requests: list[GenerateRequest], on: bool):
    runner.lane.enabled = on
    before = (runner.speculator.steps, runner.speculator.accepted)
    results = await asyncio.gather(*(engine.complete(r) for r in requests))
    after = (runner.speculator.steps, runner.speculator.accepted)
    return (
        [(r.text, r.completion_tokens) for r in results],
        after[0] - before[0],
        after[1] - before[1],
    )


async def test_a_batch_speculating_gives_the_same_outputs(
    engine: Engine, runner: TextRunner
) -> None:
    """Four greedy rows (two copy-heavy) and one sampled, seeded row decode together: with drafts
    checked in the batch, every output equals the output without, and drafts were accepted."""
    code, other = await engine.tokenize(CODE), await engine.tokenize(OTHER)
    requests = [
        GenerateRequest(prompt=code, max_tokens=32),
        GenerateRequest(prompt=other, max_tokens=24),
        GenerateRequest(prompt=code[:-4], max_tokens=28),
        GenerateRequest(prompt=other[:-3], max_tokens=20, stop=["\n\n"]),
        GenerateRequest(prompt=code, max_tokens=16, temperature=0.8, seed=7),
    ]
    plain, plain_steps, _ = await batch(engine, runner, requests, on=False)
    fast, steps, accepted = await batch(engine, runner, requests, on=True)
    assert plain_steps == 0
    assert fast == plain
    assert steps > 0 and accepted > 0, "copy-heavy rows should have had drafts accepted"

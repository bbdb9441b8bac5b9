"""Per-request samplers built on mlx_lm's sample_utils."""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
from mlx_lm.sample_utils import apply_top_p, make_sampler

Sampler = Callable[[mx.array], mx.array]


def make_request_sampler(temperature: float, top_p: float, seed: int | None) -> Sampler | None:
    """None means greedy: BatchGenerator then samples the whole batch in one call."""
    if temperature == 0:
        return None
    if seed is None:
        return make_sampler(temp=temperature, top_p=top_p if top_p < 1 else 0.0)
    # A seeded request owns its random key, so its output does not depend on its batch mates.
    key = mx.random.key(seed & (2**64 - 1))  # negative: two's complement
    inv_temp = 1.0 / temperature

    def sampler(logprobs: mx.array) -> mx.array:
        nonlocal key
        if 0 < top_p < 1:
            logprobs = apply_top_p(logprobs, top_p)
        key, sub = mx.random.split(key)
        return mx.random.categorical(logprobs * inv_temp, key=sub)

    return sampler

"""Issue 21 item 2, measured: should decode rows and a prefill chunk share one forward pass?

mlx_lm's models take a rectangular batch `[rows, length]` with one mask, so the only way to put
`B` decode rows (one token each) and a prompt chunk of `L` tokens into one pass is to pad every
row to `L`: a `[B + 1, L]` pass. The other way is the engine's: two passes, `[B, 1]` then
`[1, L]`, under a per-step token budget. A varlen pass (vLLM's and SGLang's flattened tokens)
would cost about what `[1, B + L]` costs; no mlx_lm model takes one, so that column is the bound
of what writing such a model forward for each architecture could win.

Every pass runs over a KV context of `CONTEXT` tokens, on the worker thread, best of `REPEATS`.

Then the step budget itself, through the engine: `STREAMS` chats stream while `BURST` long
prompts arrive; the streams' longest wait for a token and the burst's last first token, with
the budget (decode rows first, the burst's rows share the rest) and without (each prompt row
its whole chunk every step, as before the budget), alternating runs.

`mlx-sidecar bench --suite step-shape`
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import mlx.core as mx
from mlx_lm.models.cache import BatchKVCache

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.engine.prefill import STEP_BUDGET_CHUNKS
from sidecar.engine.requests import GenerateRequest, Result

STREAMS = 4
BURST = 8
BURST_WORDS = 300  # about 400 tokens each
STREAMS_START_S = 120  # the streams' prompts are short: far more than they need to start

CONTEXT = 128
REPEATS = 5
SHAPES = ((1, 16), (1, 64), (4, 16), (4, 64), (8, 16), (8, 64))


def _pass_s(model: Any, rows: int, length: int) -> float:
    """Seconds of one forward pass of `[rows, length]` tokens after `CONTEXT` cached ones (the
    context prefilled once; each timed pass is trimmed off again)."""
    cache = [BatchKVCache([0] * rows) for _ in model.layers]
    mx.eval(model(mx.ones((rows, CONTEXT), dtype=mx.int32), cache=cache))
    mx.eval([c.state for c in cache])
    tokens = mx.ones((rows, length), dtype=mx.int32)
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        mx.eval(model(tokens, cache=cache))
        best = min(best, time.perf_counter() - start)
        for c in cache:
            c.trim(length)
    return best


def measure(model: Any) -> list[dict[str, Any]]:
    rows = []
    for decode_rows, chunk in SHAPES:
        apart = _pass_s(model, decode_rows, 1) + _pass_s(model, 1, chunk)
        padded = _pass_s(model, decode_rows + 1, chunk)
        flat = _pass_s(model, 1, decode_rows + chunk)
        rows.append(
            {
                "decode_rows": decode_rows,
                "chunk": chunk,
                "two_passes_ms": round(apart * 1000, 1),
                "one_padded_pass_ms": round(padded * 1000, 1),
                "varlen_bound_ms": round(flat * 1000, 1),
                "padded_vs_two": round(padded / apart, 2),
                "varlen_vs_two": round(flat / apart, 2),
            }
        )
    return rows


def format_table(model: str, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"Decode rows and a prefill chunk: two passes or one ({model}, {CONTEXT} tokens of "
        f"context, best of {REPEATS}; ratio < 1: one pass is faster)",
        "| decode rows | chunk | two passes ms | one padded pass ms | padded / two | "
        "varlen bound ms | varlen / two |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['decode_rows']} | {r['chunk']} | {r['two_passes_ms']} | "
            f"{r['one_padded_pass_ms']} | {r['padded_vs_two']} | {r['varlen_bound_ms']} | "
            f"{r['varlen_vs_two']} |"
        )
    return "\n".join(lines)


async def burst_while_streaming(
    engine: Engine, model: str, chunks: int | None, salt: int
) -> dict[str, Any]:
    """One run with a step budget of `chunks` prefill chunks (None: none); `salt` makes its
    prompts new (nothing in the prompt cache)."""
    runner = (await engine.load(model)).runner
    default_budget = runner.step_budget
    runner.step_budget = runner.prefill_chunk * chunks if chunks else 1 << 30
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]

    def ask(prompt: str, max_tokens: int) -> asyncio.Task[Result]:
        request = GenerateRequest(prompt=prompt, model=model, max_tokens=max_tokens)
        return asyncio.ensure_future(engine.complete(request))

    streams = [ask(f"Story {salt}.{i}: once upon a time", 96) for i in range(STREAMS)]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STREAMS_START_S
    while len(runner.running) < STREAMS:  # all of them decoding
        if loop.time() > deadline:
            raise RuntimeError(f"the {STREAMS} chats did not all start in {STREAMS_START_S} s")
        await asyncio.sleep(0.01)
    start = loop.time()
    burst = [
        ask(
            f"{salt}.{i}: " + " ".join(words[(j * 5 + i) % len(words)] for j in range(BURST_WORDS)),
            4,
        )
        for i in range(BURST)
    ]
    burst_done = await asyncio.gather(*burst)
    last_first = max(r.time_to_first_token_s or 0.0 for r in burst_done)
    done = await asyncio.gather(*streams)
    runner.step_budget = default_budget
    return {
        "streams_longest_gap_s": max(r.max_token_gap_s or 0.0 for r in done),
        "burst_last_first_token_s": last_first,
        "burst_wall_s": loop.time() - start,
    }


BUDGETS: dict[str, int | None] = {
    "none (a whole chunk per prompt row)": None,
    f"{STEP_BUDGET_CHUNKS} chunks (the default)": STEP_BUDGET_CHUNKS,
    "2 chunks": 2,
    "1 chunk": 1,
}


def format_burst(model: str, runs: dict[str, list[dict[str, Any]]]) -> str:
    def med(key: str, name: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    lines = [
        f"{STREAMS} chats streaming while {BURST} prompts of ~400 tokens arrive ({model}, "
        f"median of {min(len(r) for r in runs.values())} alternating runs)",
        "| step budget | streams' longest gap s | burst's last first token s |",
        "|---|---:|---:|",
    ]
    for name in runs:
        lines.append(
            f"| {name} | {med('streams_longest_gap_s', name):.2f} | "
            f"{med('burst_last_first_token_s', name):.2f} |"
        )
    return "\n".join(lines)


async def suite(settings: Settings, model: str, repeats: int = 2) -> dict[str, Any]:
    async with Engine(settings) as engine:
        loaded = await engine.load(model)
        rows = await asyncio.wrap_future(engine.worker.call(lambda: measure(loaded.model)))
        print(format_table(model, rows), flush=True)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in BUDGETS}
        salt = 0
        for _ in range(repeats):
            for name, chunks in BUDGETS.items():
                salt += 1
                runs[name].append(await burst_while_streaming(engine, model, chunks, salt))
        print(format_burst(model, runs), flush=True)
    return {"model": model, "rows": rows, "burst": runs}

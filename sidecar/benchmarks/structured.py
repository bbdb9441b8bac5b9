"""Constrained (json_schema) vs free decoding on the same model, prompt and token budget, at
several stream counts, in one run. Runs alternate (free, constrained, mixed, free, ...) so drift
on a shared machine hits every mode alike.

The schema (a list of objects with strings, enums and numbers, at least 40 items) cannot end
within the budget, so constrained streams decode as many tokens as free ones. Two rates:
- wall: aggregate decode tokens/s, each stream's tokens after its first over the time since its
  first, summed over the streams (prefill, the same for every mode, left out);
- CPU: the batch's tokens per CPU-second of this process (every MLX and BLAS thread), which
  other processes on a shared machine barely move; prefill is in it, the same for every mode.
"mixed" runs half the streams constrained beside half free: the free half's wall rate against
the same share of an all-free batch (what a mask costs batch mates that have none), and the
whole batch's CPU rate.

Other work on the machine moves every rate; each repeat runs the modes back to back (their
order rotating) and the ratios are the median of the per-repeat ratios. The mask's own cost is
also timed apart: a fresh guide replays a constrained answer's tokens, which gives microseconds
per masked token next to the free decode step (the share of a step the mask can take).

`mlx-sidecar bench --suite structured`
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from sidecar.config import Settings
from sidecar.engine.chat import chat_prompt
from sidecar.engine.constraints import Constraint, make_guide
from sidecar.engine.engine import Engine
from sidecar.engine.requests import GenerateRequest, Priority, Result

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "aisle": {"enum": ["fruit", "dairy", "bakery", "frozen", "other"]},
                    "quantity": {"type": "integer"},
                    "price": {"type": "number"},
                },
                "required": ["name", "aisle", "quantity", "price"],
                "additionalProperties": False,
            },
            "minItems": 40,
        }
    },
    "required": ["items"],
    "additionalProperties": False,
}
QUESTION = "Write a long shopping list as JSON: items with name, aisle, quantity and price."
MODES = ("free", "constrained", "mixed")


@dataclass
class Run:
    wall_tps: float  # aggregate decode tok/s of the measured streams (wall clock)
    cpu_tpcs: float  # tokens of the whole batch per CPU-second of this process
    fewest: int  # fewest tokens a measured stream made
    results: list[Result]


async def one_run(
    engine: Engine, model: str, prompt: list[int], streams: int, mode: str, max_tokens: int
) -> Run:
    constraint = Constraint.json_schema(SCHEMA, strict=True)
    guided = {"free": 0, "constrained": streams, "mixed": streams // 2}[mode]
    requests = [
        GenerateRequest(
            prompt=prompt,
            model=model,
            max_tokens=max_tokens,
            priority=Priority.CHAT,
            constraint=constraint if i < guided else None,
        )
        for i in range(streams)
    ]
    cpu = time.process_time()
    results = await asyncio.gather(*[engine.complete(r) for r in requests])
    cpu = time.process_time() - cpu
    measured = results[guided:] if mode == "mixed" else results
    return Run(
        wall_tps=sum(r.tokens_per_s or 0.0 for r in measured),
        cpu_tpcs=sum(r.completion_tokens for r in results) / cpu if cpu > 0 else 0.0,
        fewest=min(r.completion_tokens for r in measured),
        results=results,
    )


async def mask_cost_us(engine: Engine, model: str, text: str) -> float:
    """Microseconds a guide takes per token (consume, mask, apply) replaying `text`'s tokens,
    on the engine's worker thread (the one that runs MLX)."""
    loaded = await engine.load(model)
    tokens = await engine.tokenize(text, model)
    guide = make_guide(
        Constraint.json_schema(SCHEMA, strict=True), loaded.tokenizer, loaded.runner.stop_ids
    )
    vocab = loaded.vocab_size

    def replay() -> float:
        logits = mx.zeros((1, vocab))
        context = mx.array([0, *tokens], dtype=mx.int32)
        mx.eval(context)
        guide(context[:1], logits)  # the first call sees the prompt only
        start = time.perf_counter()
        for i in range(len(tokens)):
            mx.eval(guide(context[: i + 2], logits))
        return (time.perf_counter() - start) / max(1, len(tokens)) * 1e6

    return float(await asyncio.wrap_future(engine.worker.call(replay)))


def _median(runs: dict[str, list[Run]], mode: str, what: str) -> float:
    return statistics.median(getattr(r, what) for r in runs[mode])


def _ratio(runs: dict[str, list[Run]], mode: str, what: str, share: float = 1.0) -> float | None:
    """`mode` against free, per repeat (its runs were back to back), then the median."""
    pairs = [
        getattr(x, what) / (getattr(f, what) * share)
        for x, f in zip(runs[mode], runs["free"], strict=True)
        if getattr(f, what)
    ]
    return round(statistics.median(pairs), 2) if pairs else None


async def structured_benchmark(
    engine: Engine, model: str, levels: list[int], max_tokens: int, repeats: int = 3
) -> list[dict[str, Any]]:
    messages = [{"role": "user", "content": QUESTION}]
    prompt = chat_prompt(await engine.text_model(model), messages)
    assert isinstance(prompt, list)
    warm = await one_run(engine, model, prompt, 1, "constrained", max_tokens)
    mask_us = await mask_cost_us(engine, model, warm.results[0].text)
    rows = []
    for streams in levels:
        modes = MODES if streams > 1 else MODES[:2]
        runs: dict[str, list[Run]] = {m: [] for m in modes}
        for rep in range(repeats):
            for mode in modes[rep % len(modes) :] + modes[: rep % len(modes)]:
                runs[mode].append(await one_run(engine, model, prompt, streams, mode, max_tokens))
        median = functools.partial(_median, runs)
        ratio = functools.partial(_ratio, runs)

        free = median("free", "wall_tps")
        step_ms = streams / free * 1e3 if free else None
        row: dict[str, Any] = {
            "streams": streams,
            "free_tps": round(free, 1),
            "constrained_tps": round(median("constrained", "wall_tps"), 1),
            "wall_ratio": ratio("constrained", "wall_tps"),
            "free_tokens_per_cpu_s": round(median("free", "cpu_tpcs"), 1),
            "constrained_tokens_per_cpu_s": round(median("constrained", "cpu_tpcs"), 1),
            "cpu_ratio": ratio("constrained", "cpu_tpcs"),
            "fewest_tokens": min(r.fewest for rs in runs.values() for r in rs),
            "mask_us_per_token": round(mask_us),
            "free_step_ms": round(step_ms, 1) if step_ms else None,
            # what the masks of an all-constrained batch add to one free decode step
            "mask_share_of_step": round(mask_us * streams / (step_ms * 1e3), 4)
            if step_ms
            else None,
        }
        if "mixed" in runs:
            # the free half of a mixed batch, against the same share of an all-free batch
            row["mixed_free_half_ratio"] = ratio(
                "mixed", "wall_tps", (streams - streams // 2) / streams
            )
            row["mixed_cpu_ratio"] = ratio("mixed", "cpu_tpcs")
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]], max_tokens: int) -> str:
    lines = [
        f"Structured output: json_schema constrained vs free decoding (max_tokens={max_tokens}); "
        "ratios are medians of back-to-back runs; tokens per CPU-second ignore other load",
        "| streams | free tok/s | constrained tok/s | ratio (wall) | free tok/CPU-s | "
        "constrained tok/CPU-s | ratio (CPU) | mixed batch: free half (wall), all (CPU) | "
        "fewest tokens | mask µs/token | free step ms | masks' share of a step |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        mixed = (
            f"{r['mixed_free_half_ratio']}x, {r['mixed_cpu_ratio']}x"
            if "mixed_cpu_ratio" in r
            else "-"
        )
        share = r["mask_share_of_step"]
        lines.append(
            f"| {r['streams']} | {r['free_tps']} | {r['constrained_tps']} | {r['wall_ratio']}x | "
            f"{r['free_tokens_per_cpu_s']} | {r['constrained_tokens_per_cpu_s']} | "
            f"{r['cpu_ratio']}x | {mixed} | {r['fewest_tokens']} | {r['mask_us_per_token']} | "
            f"{r['free_step_ms']} | {f'{share:.2%}' if share is not None else '-'} |"
        )
    return "\n".join(lines)


async def suite(
    settings: Settings, model: str, levels: list[int], max_tokens: int
) -> dict[str, Any]:
    async with Engine(settings) as engine:
        rows = await structured_benchmark(engine, model, levels, max_tokens)
    print(format_table(rows, max_tokens), flush=True)
    return {"rows": rows}

"""Prompt-lookup speculative decoding, on and off, on the same greedy completions in one run:
an edit that copies nearby code (a second function like the first) and text that does not
repeat, one completion alone (it leaves the batch to speculate) and 2, 4 and 8 together
(drafts checked inside the batch's step). Runs alternate (off, on, off, on, ...) so drift on a
shared machine hits both.

`mlx-sidecar bench --suite speculative`
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.engine.requests import GenerateRequest, Priority

COPY = """class Inventory:
    def __init__(self, items):
        self.items = items

    def total_price(self):
        total = 0.0
        for item in self.items:
            if item.price > 0 and item.quantity > 0:
                total += item.price * item.quantity
        return round(total, 2)

    def total_weight(self):
        total = 0.0
        for item in self.items:
"""
PROSE = "Once upon a time, in a small village by the sea, there lived"
CASES = {"copies nearby code": COPY, "text that does not repeat": PROSE}


async def speculative_benchmark(
    engine: Engine,
    model: str,
    max_tokens: int = 64,
    repeats: int = 3,
    streams: tuple[int, ...] = (1, 2, 4, 8),
) -> list[dict[str, Any]]:
    loaded = await engine.load(model)
    runner = loaded.runner
    rows = []
    for name, text in CASES.items():
        prompt = await engine.tokenize(text, model)
        for n in streams:
            # n different prompts: the case cut short by 0..n-1 tokens
            prompts = [prompt[: len(prompt) - i] for i in range(n)]
            rates: dict[bool, list[float]] = {False: [], True: []}
            outputs: dict[bool, set[tuple[str, ...]]] = {False: set(), True: set()}
            drafted = accepted = 0
            for _ in range(repeats):
                for on in (False, True):
                    runner.lane.enabled = on
                    before = (runner.drafted_tokens, runner.accepted_tokens)
                    start = time.perf_counter()
                    results = await asyncio.gather(
                        *(
                            engine.complete(
                                GenerateRequest(
                                    prompt=p,
                                    model=model,
                                    max_tokens=max_tokens,
                                    priority=Priority.COMPLETION,
                                )
                            )
                            for p in prompts
                        )
                    )
                    tokens = sum(r.completion_tokens for r in results)
                    rates[on].append(tokens / (time.perf_counter() - start))
                    outputs[on].add(tuple(r.text for r in results))
                    if on:
                        drafted += runner.drafted_tokens - before[0]
                        accepted += runner.accepted_tokens - before[1]
            runner.lane.enabled = engine.settings.speculative
            plain, fast = statistics.median(rates[False]), statistics.median(rates[True])
            rows.append(
                {
                    "case": name,
                    "streams": n,
                    "plain_tps": round(plain, 1),
                    "speculative_tps": round(fast, 1),
                    "ratio": round(fast / plain, 2),
                    "accepted_share": round(accepted / drafted, 2) if drafted else None,
                    "same_output": outputs[False] == outputs[True] and len(outputs[False]) == 1,
                }
            )
    return rows


def format_table(rows: list[dict[str, Any]], max_tokens: int) -> str:
    lines = [
        f"Prompt-lookup speculative decoding, greedy completions alone and together (max_tokens="
        f"{max_tokens}), median of alternating runs",
        "| case | streams | plain tok/s | speculative tok/s | ratio | drafts accepted | same output |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['streams']} | {r['plain_tps']} | {r['speculative_tps']} | {r['ratio']}x | "
            f"{r['accepted_share']} | {'yes' if r['same_output'] else 'NO'} |"
        )
    return "\n".join(lines)


async def suite(settings: Settings, model: str, max_tokens: int) -> dict[str, Any]:
    async with Engine(settings) as engine:
        rows = await speculative_benchmark(engine, model, max_tokens)
    print(format_table(rows, max_tokens), flush=True)
    return {"rows": rows}

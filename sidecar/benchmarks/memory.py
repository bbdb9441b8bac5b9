"""Memory at each stage of a model's life in one engine (this process): before load, loaded,
right after a burst of concurrent requests, at rest once the worker has idled, and after unload.
Each stage reports the process's RSS, MLX's active and cached bytes, and the memory governor's
figures (weights, running KV, prompt caches, used of the budget), with RSS as a share of the
loaded size, so "memory goes back" is a measured ratio.

`mlx-sidecar bench --suite memory [--model M] [--concurrency 8] [--max-tokens 64]`
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import mlx.core as mx

from sidecar.benchmarks.soak import rss_of
from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.engine.requests import GenerateRequest

MiB = 2**20
PROMPT = "Write a short note about memory in editors, number {i}:"


def snapshot(engine: Engine, stage: str) -> dict[str, Any]:
    memory = engine.status().memory
    return {
        "stage": stage,
        "rss_bytes": rss_of(os.getpid()) or 0,
        "mlx_active_bytes": mx.get_active_memory(),
        "mlx_cache_bytes": mx.get_cache_memory(),
        "weights_bytes": memory.models_bytes,
        "kv_bytes": memory.kv_bytes,
        "prompt_cache_bytes": memory.prompt_cache_bytes,
        "used_bytes": memory.used_bytes,
        "budget_bytes": memory.budget_bytes,
    }


async def at_rest(engine: Engine, timeout_s: float = 30.0) -> None:
    """Until the worker has run its idle pass (MLX's buffer cache handed back)."""
    deadline = time.monotonic() + timeout_s
    while mx.get_cache_memory() > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def suite(settings: Settings, model: str, concurrency: int, max_tokens: int) -> dict:
    stages: list[dict[str, Any]] = []
    async with Engine(settings) as engine:
        stages.append(snapshot(engine, "before load"))
        await engine.load(model)
        await engine.complete(GenerateRequest(prompt="Hello", model=model, max_tokens=2))
        await at_rest(engine)
        stages.append(snapshot(engine, "loaded"))
        requests = [
            engine.complete(
                GenerateRequest(prompt=PROMPT.format(i=i), model=model, max_tokens=max_tokens)
            )
            for i in range(concurrency)
        ]
        busy = asyncio.gather(*requests)
        while engine.status().running < concurrency and not busy.done():
            await asyncio.sleep(0.01)
        stages.append(snapshot(engine, f"{concurrency} running"))
        await busy
        stages.append(snapshot(engine, "just finished"))
        await at_rest(engine)
        stages.append(snapshot(engine, "at rest"))
        await engine.unload(model)
        stages.append(snapshot(engine, "unloaded"))
    base, loaded = stages[0]["rss_bytes"], stages[1]["rss_bytes"]
    for s in stages:
        grown = s["rss_bytes"] - base
        s["rss_share_of_loaded"] = round(grown / (loaded - base), 3) if loaded > base else None
    report = {"model": model, "stages": stages}
    print(format_table(report), flush=True)
    return report


def format_table(report: dict[str, Any]) -> str:
    head = (
        f"{'stage':<16}{'RSS MiB':>9}{'x loaded':>10}{'MLX active':>12}{'MLX cache':>11}"
        f"{'weights':>9}{'KV':>7}{'prompt$':>9}{'used':>7}"
    )
    lines = [f"memory: {report['model']} (MiB; 'x loaded' = RSS growth / growth at load)", head]
    for s in report["stages"]:
        share = s["rss_share_of_loaded"]
        lines.append(
            f"{s['stage']:<16}{s['rss_bytes'] / MiB:>9.0f}"
            f"{'' if share is None else f'{share:.2f}':>10}"
            f"{s['mlx_active_bytes'] / MiB:>12.0f}{s['mlx_cache_bytes'] / MiB:>11.0f}"
            f"{s['weights_bytes'] / MiB:>9.0f}{s['kv_bytes'] / MiB:>7.1f}"
            f"{s['prompt_cache_bytes'] / MiB:>9.1f}{s['used_bytes'] / MiB:>7.0f}"
        )
    return "\n".join(lines)

"""Benchmarks measured in one run on one model: the engine next to mlx_lm's raw BatchGenerator and
plain sequential `stream_generate`, and embeddings engine vs raw mlx_embeddings.

Every figure here is aggregate throughput over wall time, prompts included, greedy decoding, the
same prompts for every contender, so ratios compare like with like.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from sidecar import blas
from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.engine.messages import render_chat
from sidecar.engine.requests import GenerateRequest
from sidecar.models.limits import stop_token_ids

TOPICS = [
    "the sea",
    "a lighthouse",
    "a robot",
    "autumn",
    "a city at night",
    "a dragon",
    "a library",
    "the moon",
    "a train journey",
    "a garden",
    "winter",
    "a detective",
    "a volcano",
    "a river",
    "a clockmaker",
    "the desert",
    "a violin",
    "a spaceship",
    "a market",
    "a storm",
    "a mountain",
    "a cat",
    "a bridge",
    "a painter",
    "a forest",
    "an island",
    "a bakery",
    "a comet",
    "a lantern",
    "a harbor",
    "a castle",
    "a snowman",
]
SENTENCES = [
    f"This is sentence number {i} about {TOPICS[i % len(TOPICS)]} and what it means."
    for i in range(256)
]


@dataclass
class Throughput:
    tokens: int
    seconds: float

    @property
    def tps(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def prompts_for(tokenizer: Any, n: int) -> list[list[int]]:
    return [
        render_chat(tokenizer, [{"role": "user", "content": f"Write a long story about {t}."}])
        for t in (TOPICS * (n // len(TOPICS) + 1))[:n]
    ]


async def engine_text(
    engine: Engine, model: str, prompts: list[list[int]], max_tokens: int
) -> Throughput:
    start = time.perf_counter()
    results = await asyncio.gather(
        *[
            engine.complete(GenerateRequest(prompt=p, model=model, max_tokens=max_tokens))
            for p in prompts
        ]
    )
    return Throughput(sum(r.completion_tokens for r in results), time.perf_counter() - start)


def raw_batch_generator(
    model: Any, tokenizer: Any, prompts: list[list[int]], max_tokens: int
) -> Throughput:
    from mlx_lm.generate import BatchGenerator

    gen = BatchGenerator(
        model,
        stop_tokens=[[t] for t in stop_token_ids(tokenizer)],
        completion_batch_size=max(32, len(prompts)),
        prefill_batch_size=8,
        prefill_step_size=512,
    )
    start = time.perf_counter()
    gen.insert(prompts, max_tokens=[max_tokens] * len(prompts))
    tokens, left = 0, len(prompts)
    while left:
        _, responses = gen.next()
        tokens += len(responses)
        left -= sum(r.finish_reason is not None for r in responses)
    elapsed = time.perf_counter() - start
    gen.close()
    return Throughput(tokens, elapsed)


def raw_sequential(
    model: Any, tokenizer: Any, prompts: list[list[int]], max_tokens: int
) -> Throughput:
    from mlx_lm import stream_generate

    start = time.perf_counter()
    tokens = 0
    for p in prompts:
        for _ in stream_generate(model, tokenizer, p, max_tokens=max_tokens):
            tokens += 1
    return Throughput(tokens, time.perf_counter() - start)


async def text_benchmark(
    engine: Engine, model: str, concurrencies: list[int], max_tokens: int, sequential_n: int = 2
) -> list[dict[str, Any]]:
    loaded = await engine.load(model)
    on_worker = engine.worker.call
    rows = []
    seq_prompts = prompts_for(loaded.tokenizer, sequential_n)
    sequential = await asyncio.wrap_future(
        on_worker(lambda: raw_sequential(loaded.model, loaded.tokenizer, seq_prompts, max_tokens))
    )
    for n in concurrencies:
        prompts = prompts_for(loaded.tokenizer, n)
        ours = await engine_text(engine, model, prompts, max_tokens)
        raw = await asyncio.wrap_future(
            on_worker(
                functools.partial(
                    raw_batch_generator, loaded.model, loaded.tokenizer, prompts, max_tokens
                )
            )
        )
        rows.append(
            {
                "concurrency": n,
                "engine_tps": ours.tps,
                "raw_batch_tps": raw.tps,
                "sequential_tps": sequential.tps,
                "engine_vs_raw": ours.tps / raw.tps if raw.tps else 0.0,
                "engine_vs_sequential": ours.tps / sequential.tps if sequential.tps else 0.0,
            }
        )
    return rows


def _raw_embed(model: Any, tokenizer: Any, texts: list[str], batch: int) -> float:
    import mlx_embeddings

    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        out = mlx_embeddings.generate(model, tokenizer, texts[i : i + batch])
        mx.eval(out.text_embeds)
    return len(texts) / (time.perf_counter() - start)


async def embedding_benchmark(engine: Engine, model: str, n: int = 128) -> dict[str, float]:
    loaded = await engine.load(model)
    texts = SENTENCES[:n]
    start = time.perf_counter()
    for t in texts[: n // 4]:
        await engine.embed([t], model)
    one_at_a_time = (n // 4) / (time.perf_counter() - start)
    start = time.perf_counter()
    await asyncio.gather(*[engine.embed([t], model) for t in texts])
    concurrent = n / (time.perf_counter() - start)
    raw_one = await asyncio.wrap_future(
        engine.worker.call(lambda: _raw_embed(loaded.model, loaded.tokenizer, texts[: n // 4], 1))
    )
    raw_batched = await asyncio.wrap_future(
        engine.worker.call(lambda: _raw_embed(loaded.model, loaded.tokenizer, texts, 64))
    )
    return {
        "engine_one_at_a_time": one_at_a_time,
        "engine_concurrent": concurrent,
        "raw_one_at_a_time": raw_one,
        "raw_batch_64": raw_batched,
        "concurrent_vs_one_at_a_time": concurrent / one_at_a_time,
        "engine_concurrent_vs_raw_batch": concurrent / raw_batched,
    }


def format_text_table(rows: list[dict[str, Any]], max_tokens: int) -> str:
    lines = [
        f"Text decode, aggregate tokens/s (greedy, max_tokens={max_tokens}, prompts included)",
        "| concurrency | engine | raw BatchGenerator | sequential stream_generate | engine/raw | engine/sequential |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['concurrency']} | {r['engine_tps']:.1f} | {r['raw_batch_tps']:.1f} | "
            f"{r['sequential_tps']:.1f} | {r['engine_vs_raw']:.2f}x | {r['engine_vs_sequential']:.2f}x |"
        )
    if rows and rows[0]["concurrency"] == 1:
        base = rows[0]["engine_tps"]
        scaling = ", ".join(f"{r['concurrency']}: {r['engine_tps'] / base:.1f}x" for r in rows[1:])
        lines.append(f"engine scaling vs 1 stream: {scaling}")
    return "\n".join(lines)


def format_embedding_table(e: dict[str, float]) -> str:
    return "\n".join(
        [
            "Embeddings, sentences/s",
            "| engine one at a time | engine concurrent | raw one at a time | raw batch 64 | concurrent/one | engine concurrent/raw batch |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {e['engine_one_at_a_time']:.1f} | {e['engine_concurrent']:.1f} | "
            f"{e['raw_one_at_a_time']:.1f} | {e['raw_batch_64']:.1f} | "
            f"{e['concurrent_vs_one_at_a_time']:.2f}x | {e['engine_concurrent_vs_raw_batch']:.2f}x |",
        ]
    )


async def suite(
    settings: Settings,
    model: str,
    embedding_model: str,
    concurrency: list[int],
    max_tokens: int,
    text: bool = True,
    embeddings: bool = True,
) -> dict[str, Any]:
    """`bench --suite engine`: start an engine, print each table as it is measured."""
    out: dict[str, Any] = {}
    async with Engine(settings) as engine:
        print(f"device: {engine.status().device}; OpenBLAS: {blas.loaded_path or 'no'}")
        if text:
            rows = await text_benchmark(engine, model, concurrency, max_tokens)
            out["text"] = rows
            print(format_text_table(rows, max_tokens), flush=True)
        if embeddings:
            e = await embedding_benchmark(engine, embedding_model)
            out["embeddings"] = e
            print(format_embedding_table(e), flush=True)
    return out

"""Replay a recorded typing session against the inline completion path, as an editor drives it:
each keystroke edits the buffer, cancels the completion still running, and asks for a new one.

    mlx-sidecar bench --suite typing [--typing-session fixtures/typing-session.json]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

from sidecar.completion.cache import CompletionCache
from sidecar.completion.service import CompletionOptions, complete_inline
from sidecar.engine.engine import Engine
from sidecar.engine.requests import GenerateRequest, Priority, Result

CHAT_PROMPT = "Explain in detail how a hash map works, with examples."


def apply_insert(text: str, line: int, character: int, insert: str) -> tuple[str, int]:
    """Insert at (line, character); return the new text and the offset after the insert."""
    lines = text.split("\n")
    offset = sum(len(ln) + 1 for ln in lines[:line]) + character
    return text[:offset] + insert + text[offset:], offset + len(insert)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: list[float]) -> dict[str, float | None]:
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 1)

    return {
        "median": ms(statistics.median(values)) if values else None,
        "p95": ms(percentile(values, 0.95)),
        "count": len(values),
    }


async def chat_stream(
    engine: Engine, model: str, stop: asyncio.Event, stats: dict[str, Any]
) -> None:
    """Keep one chat reply streaming until `stop` is set."""
    prompt = await engine.chat_prompt([{"role": "user", "content": CHAT_PROMPT}], model)
    while not stop.is_set():
        request = GenerateRequest(
            prompt=prompt, model=model, max_tokens=512, priority=Priority.CHAT
        )
        started = time.perf_counter()
        tokens = 0
        async for event in engine.generate(request):
            if stop.is_set():
                break
            if isinstance(event, Result):
                tokens = event.completion_tokens
            elif event.text:
                tokens += 1  # about one token per delta
        stats["chat_tokens"] += tokens
        stats["chat_s"] += time.perf_counter() - started


async def replay_typing_session(
    engine: Engine,
    session_json: Path,
    with_chat: bool,
    *,
    model: str | None = None,
    options: CompletionOptions | None = None,
    isolated_samples: int = 0,
) -> dict[str, Any]:
    """Median/p95 latency of the completions that finished, and how many were cancelled.

    Typing outruns a CPU model (a keystroke every ~180 ms), so few completions finish;
    `isolated_samples` > 0 also times that many keystroke states, evenly spread, one at a time
    without cancellation or cache (`isolated_latency_ms`): the latency of one completion."""
    session = json.loads(Path(session_json).read_text())
    model = model or engine.settings.completion_model
    options = options or CompletionOptions()
    chat_model = engine.settings.chat_model
    await engine.load(model)
    cache = CompletionCache(options.cache_size)
    text: str = session["initial_text"]
    states: list[tuple[str, str]] = []
    model_latencies: list[float] = []
    cache_latencies: list[float] = []
    results: list[dict[str, Any]] = []
    cancelled = 0
    inflight: asyncio.Task[None] | None = None

    async def one(prefix: str, suffix: str, started: float) -> None:
        hit = cache.get(prefix, suffix)
        if hit is not None:
            cache_latencies.append(time.perf_counter() - started)
            results.append({"prefix_end": prefix[-20:], "text": hit, "cached": True})
            return
        completion = await complete_inline(engine, model, prefix, suffix, options)
        cache.put(prefix, suffix, completion.text)
        model_latencies.append(time.perf_counter() - started)
        results.append({"prefix_end": prefix[-20:], "text": completion.text, "cached": False})

    chat_stop = asyncio.Event()
    chat_stats: dict[str, Any] = {"chat_tokens": 0, "chat_s": 0.0}
    chat_task = None
    if with_chat:
        await engine.load(chat_model)
        chat_task = asyncio.create_task(chat_stream(engine, chat_model, chat_stop, chat_stats))
        await asyncio.sleep(0.5)  # the chat is decoding before the typing starts
    begin = time.perf_counter()
    for event in session["events"]:
        delay = begin + event["t_ms"] / 1000 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        text, offset = apply_insert(text, event["line"], event["character"], event["insert"])
        states.append((text[:offset], text[offset:]))
        if inflight is not None and not inflight.done():
            inflight.cancel()  # the editor's $/cancelRequest
            cancelled += 1
        inflight = asyncio.create_task(one(text[:offset], text[offset:], time.perf_counter()))
    if inflight is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await inflight
    typing_s = time.perf_counter() - begin
    isolated: list[float] = []
    if isolated_samples > 0 and states:
        step = max(1, len(states) // isolated_samples)
        for prefix, suffix in states[::step][:isolated_samples]:
            completion = await complete_inline(engine, model, prefix, suffix, options)
            isolated.append(completion.latency_s)
    if chat_task is not None:
        chat_stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await chat_task
    finished = model_latencies + cache_latencies
    return {
        "model": model,
        "with_chat": with_chat,
        "keystrokes": len(session["events"]),
        "finished": len(finished),
        "cancelled": cancelled,
        "cache_hits": len(cache_latencies),
        "latency_ms": summary_ms(finished),
        "model_latency_ms": summary_ms(model_latencies),
        "isolated_latency_ms": summary_ms(isolated),
        "session_s": round(typing_s, 2),
        "chat_tokens_per_s": (
            round(chat_stats["chat_tokens"] / chat_stats["chat_s"], 1)
            if chat_stats["chat_s"]
            else None
        ),
        "last_completions": results[-5:],
    }


def format_table(reports: list[dict[str, Any]]) -> str:
    def cell(summary: dict[str, Any]) -> str:
        if not summary["count"]:
            return "-"
        return f"{summary['median']} / {summary['p95']} ({summary['count']})"

    lines = [
        f"Inline completion, replayed typing session ({reports[0]['keystrokes']} keystrokes), "
        "latency ms median / p95 (count)",
        "| run | finished (model + cache) | from the model | one at a time | cancelled | cache hits | chat tokens/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in reports:
        lines.append(
            f"| {'with a chat stream' if r['with_chat'] else 'alone'} | {cell(r['latency_ms'])} | "
            f"{cell(r['model_latency_ms'])} | {cell(r['isolated_latency_ms'])} | "
            f"{r['cancelled']} | {r['cache_hits']} | {r['chat_tokens_per_s'] or '-'} |"
        )
    return "\n".join(lines)

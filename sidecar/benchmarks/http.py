"""Aggregate streaming throughput of an OpenAI-compatible server, and a side-by-side run against
`mlx_lm.server` on the same model and machine.

    await http_throughput("http://127.0.0.1:8080", "SmolLM2-135M-Instruct", concurrency=8, max_tokens=64)
    mlx-sidecar bench --suite http [--max-tokens 64] [--http-concurrency 1,8]

The client is a bare asyncio HTTP/1.1 + SSE reader (no SDK), so it costs the shared CPU little.
Both servers run at once but are measured alternately (never two loads together); both load OpenBLAS (mlx_lm.server through a
`python -c` wrapper that imports `sidecar` first), so the comparison is engine against engine.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

PROMPTS = [
    "Write a long story about a dragon.",
    "Tell me a long story about a lighthouse keeper.",
    "Write a long tale about a brave knight.",
    "Describe a long journey across the desert.",
    "Write a long story about a robot who learns to paint.",
    "Tell a long story about a ship lost at sea.",
    "Write a long fairy tale about a talking fox.",
    "Describe, at length, a day in a busy city market.",
]


async def _read_body(reader: asyncio.StreamReader, chunked: bool) -> Any:
    """Yield body bytes as they arrive (chunked transfer encoding or until EOF)."""
    if not chunked:
        while data := await reader.read(65536):
            yield data
        return
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            return
        yield await reader.readexactly(size)
        await reader.readline()


async def stream_chat(
    base_url: str, payload: dict[str, Any], api_key: str | None = None
) -> dict[str, Any]:
    """POST one streamed chat completion; return its first-token time, tokens and duration."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    body = orjson.dumps(payload)
    head = [
        "POST /v1/chat/completions HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if api_key:
        head.append(f"Authorization: Bearer {api_key}")
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        status = (await reader.readline()).decode()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if " 200 " not in status:
            raise RuntimeError(f"{status.strip()}: {(await reader.read()).decode()[:300]}")
        first = None
        chunks, usage, buffer = 0, None, b""
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        async for data in _read_body(reader, chunked):
            buffer += data
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                for line in event.splitlines():
                    if not line.startswith(b"data:"):
                        continue
                    text = line[5:].strip()
                    if text == b"[DONE]":
                        continue
                    obj = orjson.loads(text)
                    if obj.get("usage"):
                        usage = obj["usage"]
                    for choice in obj.get("choices") or []:
                        if (choice.get("delta") or {}).get("content"):
                            chunks += 1
                            if first is None:
                                first = time.perf_counter() - started
    finally:
        writer.close()
    elapsed = time.perf_counter() - started
    tokens = usage["completion_tokens"] if usage else chunks
    return {"ttft_s": first, "tokens": tokens, "elapsed_s": elapsed}


async def http_throughput(
    base_url: str,
    model: str,
    concurrency: int,
    max_tokens: int,
    api_key: str | None = None,
    stagger_s: float = 0.0,
) -> dict[str, Any]:
    """Run `concurrency` streamed chats, all at once or one every `stagger_s` (requests that
    arrive while others decode, as an editor sends them); aggregate tokens/s is all tokens over
    wall time."""

    def payload(i: int) -> dict[str, Any]:
        return {
            "model": model,
            "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    async def arrive(i: int) -> dict[str, Any]:
        await asyncio.sleep(i * stagger_s)
        return await stream_chat(base_url, payload(i), api_key)

    started = time.perf_counter()
    runs = await asyncio.gather(*(arrive(i) for i in range(concurrency)))
    wall = time.perf_counter() - started
    tokens = sum(r["tokens"] for r in runs)
    ttfts = [r["ttft_s"] for r in runs if r["ttft_s"] is not None]
    return {
        "concurrency": concurrency,
        "stagger_s": stagger_s,
        "max_tokens": max_tokens,
        "completion_tokens": tokens,
        "wall_s": round(wall, 2),
        "tokens_per_s": round(tokens / wall, 2),
        "ttft_s_mean": round(sum(ttfts) / len(ttfts), 2) if ttfts else None,
        "ttft_s_max": round(max(ttfts), 2) if ttfts else None,
    }


# -- side-by-side run --------------------------------------------------------------------------


def _start(
    cmd: list[str], log: Path, ready: re.Pattern[str], timeout: float = 300
) -> tuple[subprocess.Popen[bytes], re.Match[str]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = ready.search(log.read_text(errors="replace"))
        if found:
            return proc, found
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{cmd[:4]} did not start:\n{log.read_text(errors='replace')[-2000:]}")


def start_serve(models_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A real `mlx-sidecar serve` on a free port; its base URL once it listens."""
    proc, found = _start(
        [sys.executable, "-m", "sidecar", "--models-dir", str(models_dir), "serve", "--port", "0"],
        log,
        re.compile(r"OpenAI API at (http://\S+)/v1"),
    )
    return proc, found.group(1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _wait_http(base_url: str, timeout: float = 120) -> None:
    url = urlsplit(base_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection(url.hostname, url.port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{base_url} is not answering")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def compare(
    models_dir: Path,
    model: str,
    levels: list[int],
    max_tokens: int,
    repeats: int = 2,
    stagger_s: float = 0.5,
) -> dict[str, Any]:
    """Both servers up at once (idle while the other is measured), measured alternately so that
    load from elsewhere on the machine falls on both alike; best and median of `repeats`.
    Each level runs with all streams arriving at once; the largest also with one arriving every
    `stagger_s` (0: not)."""
    from sidecar.models.store import ModelStore

    path = ModelStore(models_dir, use_hf_cache=False).path_of(model)
    logs = Path(tempfile.mkdtemp(prefix="bench-http-"))
    procs = []
    try:
        proc, url = start_serve(models_dir, logs / "sidecar.log")
        procs.append(proc)
        port = free_port()
        wrapper = (
            "import sidecar, runpy, sys; "  # OpenBLAS before mlx.core, as the sidecar does
            f"sys.argv = ['mlx_lm.server', '--model', {str(path)!r}, '--port', '{port}']; "
            "runpy.run_module('mlx_lm.server', run_name='__main__')"
        )
        proc, _ = _start(
            [sys.executable, "-c", wrapper], logs / "mlx_lm.log", re.compile("Starting httpd")
        )
        procs.append(proc)
        servers = {
            "sidecar": (url, model),
            "mlx_lm.server": (f"http://127.0.0.1:{port}", str(path)),
        }
        for url, name in servers.values():
            await _wait_http(url)
            await http_throughput(url, name, 1, 4)  # warm-up: model load, first graphs
        loads = [(c, 0.0) for c in levels] + ([(max(levels), stagger_s)] if stagger_s else [])
        runs: dict[str, dict[tuple[int, float], list[dict[str, Any]]]] = {
            k: {load: [] for load in loads} for k in servers
        }
        for _ in range(repeats):
            for level, stagger in loads:
                for key, (url, name) in servers.items():
                    runs[key][level, stagger].append(
                        await http_throughput(url, name, level, max_tokens, stagger_s=stagger)
                    )
    finally:
        for proc in procs:
            _stop(proc)
    results: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "repeats": repeats}
    for key, by_load in runs.items():
        results[key] = []
        for load in loads:
            ordered = sorted(by_load[load], key=lambda r: r["tokens_per_s"])
            best = dict(ordered[-1])  # the run least disturbed by other load on the machine
            best["median_tokens_per_s"] = ordered[len(ordered) // 2]["tokens_per_s"]
            best["all_tokens_per_s"] = [r["tokens_per_s"] for r in by_load[load]]
            results[key].append(best)
    for ours, theirs in zip(results["sidecar"], results["mlx_lm.server"], strict=True):
        ours["ratio_vs_mlx_lm"] = round(ours["tokens_per_s"] / theirs["tokens_per_s"], 2)
        ours["median_ratio_vs_mlx_lm"] = round(
            ours["median_tokens_per_s"] / theirs["median_tokens_per_s"], 2
        )
    return results


def format_table(results: dict[str, Any]) -> str:
    lines = [
        f"Streamed chat over HTTP, aggregate tokens/s (greedy, max_tokens={results['max_tokens']}, "
        f"best and median of {results['repeats']})",
        "| streams | sidecar | mlx_lm.server | ratio (best) | ratio (median) | sidecar first token s | mlx_lm.server first token s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ours, theirs in zip(results["sidecar"], results["mlx_lm.server"], strict=True):
        streams = str(ours["concurrency"])
        if ours["stagger_s"]:
            streams += f", one every {ours['stagger_s']} s"
        lines.append(
            f"| {streams} | {ours['tokens_per_s']:.1f} | {theirs['tokens_per_s']:.1f} | "
            f"{ours['ratio_vs_mlx_lm']:.2f}x | {ours['median_ratio_vs_mlx_lm']:.2f}x | "
            f"{ours['ttft_s_mean']} | {theirs['ttft_s_mean']} |"
        )
    return "\n".join(lines)

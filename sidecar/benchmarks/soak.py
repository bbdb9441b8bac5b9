"""A soak: mixed traffic over both edges of one `mlx-sidecar stdio --http-port 0` process, with
random disconnects and cancels, then checks that nothing was lost and the engine came back.

Traffic (each request drawn at random, `concurrency` at a time):
- HTTP: chat (streamed or not), text completions, embeddings; some clients hang up mid-stream
  or time out early (a disconnect);
- JSON-RPC: `mlx/chat` streamed with `mlx/chat/delta`, `textDocument/inlineCompletion`,
  `mlx/embed`; some are cancelled with `$/cancelRequest` after a random delay;
- optionally, a chat with an inline image for a vision model (`image_model`), and chats routed
  to an upstream that misbehaves (`bad_upstream_model`, configured by the caller): each must
  end in a clear error naming that upstream (502/504), never a 500 or a hang.
Outcomes are counted: ok, cancelled or disconnected by us, unexpected errors (a 5xx, a JSON-RPC
error that is not -32800 for a cancel), lost (no answer within `answer_timeout_s`). At the end:
the engine idles (nothing running or queued), answers a request, and its MLX memory is measured
against what it held right after the models loaded.

`mlx-sidecar bench --suite soak [--soak-requests N]`; tests/test_soak.py runs a short one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from sidecar.benchmarks.rpc_client import SidecarClient

CODE = "def fibonacci(n):\n    if n < 2:\n        return n\n    return "
DOC_URI = "file:///soak/example.py"
KINDS = (
    "http_chat",
    "http_chat_stream",
    "http_completion",
    "http_embed",
    "rpc_chat",
    "rpc_inline",
    "rpc_embed",
)
CANCELLED = -32800


@dataclass
class SoakReport:
    requests: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # "kind:outcome"
    unexpected: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    seconds: float = 0.0
    idle_after_s: float | None = None
    answers_after: bool = False
    memory: dict[str, int] = field(default_factory=dict)
    rss_bytes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "outcomes": dict(sorted(self.outcomes.items())),
            "unexpected": self.unexpected[:20],
            "lost": self.lost[:20],
            "seconds": round(self.seconds, 1),
            "requests_per_s": round(self.requests / self.seconds, 2) if self.seconds else None,
            "idle_after_s": self.idle_after_s,
            "answers_after": self.answers_after,
            "memory": self.memory,
            "rss_bytes": self.rss_bytes,
        }


def tiny_png(rng: random.Random) -> bytes:
    """A 56x56 PNG of random colours (stdlib only: zlib and struct)."""
    size = 56
    raw = b"".join(b"\0" + rng.randbytes(size * 3) for _ in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def rss_of(pid: int) -> int | None:
    """Resident memory of a process (Linux /proc; None elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Soak:
    def __init__(
        self,
        rng: random.Random,
        max_tokens: int,
        answer_timeout_s: float,
        rest_s: float,
        image_model: str | None = None,
        bad_upstream_model: str | None = None,
    ) -> None:
        self.rng = rng
        self.image_model = image_model
        self.bad_upstream_model = bad_upstream_model
        self.rest_s = rest_s  # the server's prompt_cache_idle_s: quiet before memory is at rest
        self.max_tokens = max_tokens
        self.timeout = answer_timeout_s
        self.client = SidecarClient("mlx-sidecar-soak")
        self.lsp = self.client.lsp
        self.report = SoakReport()
        self.url = ""
        self._ids = 0

        @self.lsp.feature("mlx/chat/delta")
        def on_delta(params: Any) -> None:  # deltas arrive; the replies are what is checked
            pass

    # -- process --

    async def start(self, env: dict[str, str]) -> None:
        options = {"completion": {"maxTokens": self.max_tokens}}
        await self.client.start(env, "--http-port", "0", init_options=options)
        self.pid = self.client.pid
        self.client.open(DOC_URI, CODE, "python")
        status = await self.rpc("mlx/status", {})
        self.url = status.http_url
        self.http = httpx.AsyncClient(base_url=f"{self.url}/v1", timeout=self.timeout)

    def stderr_text(self) -> str:
        return self.client.stderr_text()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.http.aclose()
        await self.client.stop()

    def next_id(self, kind: str) -> str:
        self._ids += 1
        return f"{kind}-{self._ids}"

    async def rpc(self, method: str, params: Any, msg_id: str | None = None) -> Any:
        return await self.client.request(method, params, msg_id, self.timeout)

    def cancel(self, msg_id: str) -> None:
        self.client.cancel(msg_id)

    # -- requests --

    def messages(self) -> list[dict[str, str]]:
        topic = self.rng.choice(["a cat", "the sea", "Python", "rain", "a clock", "bread"])
        return [{"role": "user", "content": f"Say one thing about {topic}."}]

    async def http_chat(self, stream: bool) -> str:
        body = {"messages": self.messages(), "max_tokens": self.max_tokens, "stream": stream}
        if self.rng.random() < 0.3:
            body |= {"temperature": 0.7, "seed": self.rng.randrange(-(2**31), 2**31)}
        if not stream:
            if self.rng.random() < 0.15:  # a client that gives up before the answer
                with contextlib.suppress(httpx.TimeoutException):
                    await self.http.post("/chat/completions", json=body, timeout=0.05)
                    return "ok"
                return "disconnected"
            r = await self.http.post("/chat/completions", json=body)
            return self.http_outcome(r.status_code)
        hang_up = self.rng.random() < 0.3
        async with self.http.stream("POST", "/chat/completions", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                return self.http_outcome(r.status_code)
            chunks = 0
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    chunks += 1
                    if hang_up and chunks >= 2:
                        return "disconnected"
                    if line == "data: [DONE]":
                        return "ok"
        return "unexpected:stream ended without [DONE]"

    async def http_image(self) -> str:
        """A chat with a small inline PNG for the vision model."""
        url = "data:image/png;base64," + base64.b64encode(tiny_png(self.rng)).decode()
        content = [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": url}},
        ]
        body = {
            "model": self.image_model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": self.max_tokens,
        }
        r = await self.http.post("/chat/completions", json=body)
        return self.http_outcome(r.status_code)

    async def http_bad_upstream(self) -> str:
        """A chat routed to the misbehaving upstream: a 502/503/504 naming it is right."""
        name = (self.bad_upstream_model or "").split("/", 1)[0]
        body = {
            "model": self.bad_upstream_model,
            "messages": self.messages(),
            "max_tokens": self.max_tokens,
            "stream": self.rng.random() < 0.5,
        }
        r = await self.http.post("/chat/completions", json=body)
        if r.status_code in (502, 503, 504) and f"upstream {name!r}" in r.text:  # 503: breaker
            return "refused"
        return f"unexpected:HTTP {r.status_code} {r.text[:200]}"

    async def http_completion(self) -> str:
        body = {"prompt": CODE, "max_tokens": self.max_tokens}
        r = await self.http.post("/completions", json=body)
        return self.http_outcome(r.status_code)

    async def http_embed(self) -> str:
        n = self.rng.choice([1, 2, 8, 40])
        body = {"input": [f"text {i} {self.rng.random()}" for i in range(n)]}
        r = await self.http.post("/embeddings", json=body)
        if r.status_code == 200 and len(r.json()["data"]) != n:
            return "unexpected:wrong number of vectors"
        return self.http_outcome(r.status_code)

    @staticmethod
    def http_outcome(status: int) -> str:
        return "ok" if status == 200 else f"unexpected:HTTP {status}"

    async def rpc_call(self, kind: str, method: str, params: Any, cancel_p: float) -> str:
        msg_id = self.next_id(kind)
        call = asyncio.ensure_future(self.rpc(method, params, msg_id))
        cancelled = False
        if self.rng.random() < cancel_p:
            await asyncio.sleep(self.rng.uniform(0.0, 1.0))  # a random moment: queued or running
            if not call.done():
                self.cancel(msg_id)
                cancelled = True
        try:
            await call
        except JsonRpcException as e:
            if cancelled and e.code == CANCELLED:
                return "cancelled"
            return f"unexpected:{e.code} {e.message}"
        return "cancelled-too-late" if cancelled else "ok"

    async def rpc_chat(self) -> str:
        params = {
            "messages": self.messages(),
            "max_tokens": self.max_tokens,
            "stream_token": self.next_id("stream"),
        }
        return await self.rpc_call("rpc_chat", "mlx/chat", params, cancel_p=0.3)

    async def rpc_inline(self) -> str:
        line = self.rng.randrange(0, 4)
        params = types.InlineCompletionParams(
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
            text_document=types.TextDocumentIdentifier(uri=DOC_URI),
            position=types.Position(line, 4),
        )
        return await self.rpc_call(
            "rpc_inline", types.TEXT_DOCUMENT_INLINE_COMPLETION, params, cancel_p=0.5
        )

    async def rpc_embed(self) -> str:
        params = {"input": [f"query {self.rng.random()}" for _ in range(self.rng.choice([1, 4]))]}
        return await self.rpc_call("rpc_embed", "mlx/embed", params, cancel_p=0.1)

    async def one(self, kind: str) -> None:
        runs = {
            "http_chat": lambda: self.http_chat(stream=False),
            "http_chat_stream": lambda: self.http_chat(stream=True),
            "http_completion": self.http_completion,
            "http_embed": self.http_embed,
            "rpc_chat": self.rpc_chat,
            "rpc_inline": self.rpc_inline,
            "rpc_embed": self.rpc_embed,
            "http_image": self.http_image,
            "http_bad_upstream": self.http_bad_upstream,
        }
        try:
            outcome = await asyncio.wait_for(runs[kind](), self.timeout)
        except TimeoutError:
            outcome = "lost"
        except (httpx.HTTPError, OSError) as e:
            outcome = f"unexpected:{type(e).__name__}: {e}"
        self.report.requests += 1
        self.report.outcomes[f"{kind}:{outcome.split(':')[0]}"] += 1
        if outcome == "lost":
            self.report.lost.append(kind)
        elif outcome.startswith("unexpected"):
            self.report.unexpected.append(f"{kind}: {outcome}")

    # -- the run --

    async def memory(self) -> dict[str, int]:
        status = await self.rpc("mlx/status", {})
        mem = status.memory
        return {"active": mem.active_bytes, "cache": mem.cache_bytes, "models": mem.models_bytes}

    async def wait_idle(self, limit_s: float) -> float | None:
        start = time.perf_counter()
        while time.perf_counter() - start < limit_s:
            status = await self.rpc("mlx/status", {})
            if status.running == 0 and status.queue_depth == 0:
                return round(time.perf_counter() - start, 2)
            await asyncio.sleep(0.1)
        return None

    async def run(self, requests: int, concurrency: int) -> SoakReport:
        # Warm up: every model loaded, then the memory it holds at rest.
        await self.http_chat(stream=False)
        await self.http_embed()
        await self.rpc_inline()
        await self.wait_idle(60)
        await asyncio.sleep(1.5)  # the worker's idle pass hands MLX's buffer cache back
        self.report.memory["loaded_active"] = (await self.memory())["active"]
        self.report.rss_bytes["loaded"] = rss_of(self.pid) or 0

        kinds = list(KINDS)
        kinds += ["http_image"] if self.image_model else []
        kinds += ["http_bad_upstream"] if self.bad_upstream_model else []
        drawn = kinds[len(KINDS) :]  # each optional kind at least once
        drawn += [self.rng.choice(kinds) for _ in range(requests - len(drawn))]
        self.rng.shuffle(drawn)
        queue: asyncio.Queue[str] = asyncio.Queue()
        for kind in drawn:
            queue.put_nowait(kind)

        async def client() -> None:
            while not queue.empty():
                await self.one(queue.get_nowait())

        begin = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        self.report.seconds = time.perf_counter() - begin
        self.report.rss_bytes["peak_after_load"] = rss_of(self.pid) or 0

        self.report.idle_after_s = await self.wait_idle(60)
        await asyncio.sleep(self.rest_s + 1.5)  # the worker's idle passes: caches handed back
        after = await self.memory()
        self.report.memory |= {"idle_active": after["active"], "idle_cache": after["cache"]}
        self.report.rss_bytes["idle"] = rss_of(self.pid) or 0
        self.report.answers_after = await self.http_completion() == "ok"
        return self.report


async def soak(
    env: dict[str, str],
    requests: int = 120,
    concurrency: int = 6,
    max_tokens: int = 8,
    seed: int = 0,
    answer_timeout_s: float = 120.0,
    image_model: str | None = None,
    bad_upstream_model: str | None = None,
) -> tuple[SoakReport, str]:
    """Run a soak on a fresh sidecar; return the report and the server's stderr. Memory at
    rest is read after the server's `prompt_cache_idle_s` (2 s here unless `env` sets it).
    `image_model`: a vision model that gets image chats; `bad_upstream_model`: an
    `UPSTREAM/MODEL` (configured in `env`) that misbehaves and must be answered with errors."""
    env = {"MLX_SIDECAR_PROMPT_CACHE_IDLE_S": "2", **env}
    rest_s = float(env["MLX_SIDECAR_PROMPT_CACHE_IDLE_S"])
    s = Soak(
        random.Random(seed), max_tokens, answer_timeout_s, rest_s, image_model, bad_upstream_model
    )
    await s.start(env)
    try:
        report = await s.run(requests, concurrency)
    finally:
        await s.stop()
    return report, s.stderr_text()


def format_table(report: dict[str, Any]) -> str:
    kinds = sorted({k.split(":")[0] for k in report["outcomes"]})
    results = sorted({k.split(":")[1] for k in report["outcomes"]})
    lines = [
        f"Soak: {report['requests']} requests in {report['seconds']} s "
        f"({report['requests_per_s']}/s) over HTTP and JSON-RPC, one process",
        "| request | " + " | ".join(results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    for kind in kinds:
        cells = [str(report["outcomes"].get(f"{kind}:{r}", 0)) for r in results]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    mib = 1 << 20
    mem, rss = report["memory"], report["rss_bytes"]
    lines += [
        "",
        f"lost: {len(report['lost'])}, unexpected errors: {len(report['unexpected'])}, "
        f"idle again after {report['idle_after_s']} s, answers after: {report['answers_after']}",
        f"MLX active memory: loaded {mem['loaded_active'] / mib:.0f} MiB -> idle after the soak "
        f"{mem['idle_active'] / mib:.0f} MiB (buffer cache {mem['idle_cache'] / mib:.0f} MiB); "
        f"RSS loaded {rss.get('loaded', 0) / mib:.0f} MiB, after the soak "
        f"{rss.get('peak_after_load', 0) / mib:.0f} MiB, idle {rss.get('idle', 0) / mib:.0f} MiB",
    ]
    return "\n".join(lines)

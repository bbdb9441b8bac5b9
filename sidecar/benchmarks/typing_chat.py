"""The typing benchmark's JSON-RPC client: the sidecar under test, with a chat that streams
over `mlx/chat` while the typist types, and the arrival time of each of its deltas."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from sidecar.benchmarks.rpc_client import SidecarClient

CHAT_PROMPT = "Explain in detail how a hash map works, with examples."
# The completion time budget, set out of the way: the latency is not hidden by showing less.
BUDGET_OUT_OF_THE_WAY_MS = 60000


@dataclass
class ChatLog:
    """Delta arrival times of the chat stream(s), per request."""

    times: list[list[float]] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    @property
    def tokens(self) -> int:
        return sum(len(t) for t in self.times)

    def rate(self) -> float | None:
        span = self.ended - self.started
        return self.tokens / span if span > 0 else None

    def longest_gap(self) -> float | None:
        gaps = [b - a for t in self.times for a, b in zip(t, t[1:], strict=False)]
        return max(gaps) if gaps else None


class Client(SidecarClient):
    """The sidecar under test, recording the chat stream's delta times."""

    def __init__(self) -> None:
        super().__init__("mlx-sidecar-bench")
        self.chat_logs: dict[str, ChatLog] = {}

        @self.lsp.feature("mlx/chat/delta")
        def on_delta(params: Any) -> None:
            token = getattr(params, "stream_token", None)
            log = self.chat_logs.get(str(token))
            if log is not None and log.times:
                log.times[-1].append(time.perf_counter())

    async def open_session(
        self,
        env: dict[str, str],
        uri: str,
        text: str,
        language: str,
        max_time_ms: int = BUDGET_OUT_OF_THE_WAY_MS,
    ) -> None:
        options = {"completion": {"maxTimeMs": max_time_ms}}
        await self.start(env, init_options=options)
        self.open(uri, text, language)


async def chat_until(client: Client, stop: asyncio.Event, log: ChatLog, name: str) -> ChatLog:
    """Keep one chat reply streaming over `mlx/chat` until `stop` is set."""
    log.started = time.perf_counter()
    client.chat_logs[name] = log
    n = 0
    while not stop.is_set():
        n += 1
        msg_id = f"{name}-{n}"
        log.times.append([])
        params = {
            "messages": [{"role": "user", "content": CHAT_PROMPT}],
            "max_tokens": 512,
            "temperature": 0.0,
            "stream_token": name,
        }
        task = asyncio.ensure_future(client.request("mlx/chat", params, msg_id))
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not task.done():
            client.cancel(msg_id)
            with contextlib.suppress(Exception):
                await task
    log.ended = time.perf_counter()
    return log

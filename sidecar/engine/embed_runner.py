"""Batched embeddings for one embedding model, a slice per worker step.

Calls waiting when the worker gets to them share forward passes; a slice holds at most
`slice_texts` texts (about one decode step of work) while other runners have work, so a large
job never stops a text stream
for longer than a step. A call of a few texts (a query) is CHAT class, a larger one BULK: the
scheduler runs queries first and big indexing jobs when nothing more urgent waits.

Runs only on the engine's worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from typing import Any

import mlx.core as mx
import mlx_embeddings

from sidecar.engine.requests import Embeddings, Priority
from sidecar.engine.runner import RunnerStats
from sidecar.engine.scheduler import WaitQueue, WaitTimes, most_urgent
from sidecar.errors import EngineError

log = logging.getLogger(__name__)
MAX_LENGTH = 512
ALONE_SLICE = 64  # texts per forward pass when nothing else waits: the batch that runs fastest
QUERY_TEXTS = 8  # calls up to this many texts are queries (CHAT class); larger ones BULK


@dataclass
class EmbedCall:
    texts: list[str]
    done: Callable[[Embeddings | BaseException], None]
    wanted: InitVar[Priority | None] = None  # None: by size
    priority: Priority = field(init=False)
    submitted_at: float = field(default_factory=time.perf_counter)
    vectors: list[list[float]] = field(default_factory=list)  # made so far
    failed: bool = False

    def __post_init__(self, wanted: Priority | None) -> None:
        small = len(self.texts) <= QUERY_TEXTS
        self.priority = wanted if wanted is not None else Priority.CHAT if small else Priority.BULK

    @property
    def left(self) -> int:
        return len(self.texts) - len(self.vectors)

    @classmethod
    def answered_on(
        cls, loop: asyncio.AbstractEventLoop, texts: Any, priority: Priority | None
    ) -> tuple[EmbedCall, asyncio.Future[Embeddings]]:
        """A call for `texts` (checked: a non-empty list of strings) and the future on `loop`
        that its answer settles, from the worker thread."""
        if not isinstance(texts, list) or not texts:
            raise EngineError("input must be a non-empty list of strings")
        if any(not isinstance(t, str) for t in texts):
            raise EngineError("every input must be a string")
        fut: asyncio.Future[Embeddings] = loop.create_future()

        def done(result: Embeddings | BaseException) -> None:
            def settle() -> None:
                if fut.done():
                    return
                if isinstance(result, BaseException):
                    fut.set_exception(EngineError(f"embedding failed: {result}"))
                else:
                    fut.set_result(result)

            loop.call_soon_threadsafe(settle)

        return cls(list(texts), done, priority), fut


class EmbedRunner:
    def __init__(
        self,
        model_id: str,
        model: Any,
        tokenizer: Any,
        slice_texts: int = 16,
        waits: WaitTimes | None = None,
        others_busy: Callable[[], bool] | None = None,
    ) -> None:
        self.model_id = model_id
        self.model = model
        self.tokenizer = tokenizer
        self.slice_texts = slice_texts
        self.others_busy = others_busy or (lambda: True)
        self.waits = waits or WaitTimes()
        self.pending: WaitQueue[EmbedCall] = WaitQueue()
        self.current: list[EmbedCall] = []  # started, not finished (best class first)
        self.max_batch_seen = 0

    def urgency(self) -> Priority | None:
        return most_urgent([c.priority for c in self.current], self.pending)

    def stats(self) -> RunnerStats:
        return RunnerStats(
            model_id=self.model_id,
            kind="embedding",
            waiting=self.pending.counts(),
            running=len(self.current),
            max_batch_seen=self.max_batch_seen,
        )

    def submit(self, call: EmbedCall) -> None:
        self.pending.push(call.priority, call)

    def _count_tokens(self, texts: list[str]) -> int:
        tok = getattr(self.tokenizer, "_tokenizer", self.tokenizer)
        return sum(
            len(ids) for ids in tok(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        )

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = mlx_embeddings.generate(self.model, self.tokenizer, texts, max_length=MAX_LENGTH)
        embeds = out.text_embeds.astype(mx.float32)
        mx.eval(embeds)
        return embeds.tolist()

    def _fill(self, size: int) -> list[tuple[EmbedCall, list[str]]]:
        """The next slice: texts of the most urgent calls, in order, up to `size`."""
        while (best := self.pending.best_class()) is not None and (
            not self.current or best <= min(c.priority for c in self.current)
        ):
            for call in self.pending.pop_class(best, size):
                self.waits.record(best, time.perf_counter() - call.submitted_at)
                self.current.append(call)
            if sum(c.left for c in self.current) >= size:
                break
        self.current.sort(key=lambda c: c.priority)
        top = self.current[0].priority if self.current else None
        room, parts = size, []
        for call in self.current:
            if call.priority != top or room == 0:
                break
            start = len(call.vectors)
            take = call.texts[start : start + room]
            parts.append((call, take))
            room -= len(take)
        return parts

    def step(self) -> None:
        parts = self._fill(self.slice_texts if self.others_busy() else ALONE_SLICE)
        if not parts:
            return
        texts = [t for _, chunk in parts for t in chunk]
        self.max_batch_seen = max(self.max_batch_seen, len(texts))
        try:
            vectors = self.embed(texts)
        except Exception:
            # Find the culprit: run each part alone so one bad input fails only its caller.
            log.exception("batched embedding failed; retrying calls one by one")
            for call, chunk in parts:
                try:
                    call.vectors += self.embed(chunk)
                except Exception as e:
                    call.failed = True
                    call.done(e)
        else:
            start = 0
            for call, chunk in parts:
                call.vectors += vectors[start : start + len(chunk)]
                start += len(chunk)
        for call, _ in parts:
            if not call.failed and call.left == 0:
                call.done(Embeddings(self.model_id, call.vectors, self._count_tokens(call.texts)))
        self.current = [c for c in self.current if not c.failed and c.left > 0]

    def fail_all(self, message: str) -> None:
        for call in [*self.current, *self.pending.drop(lambda c: True)]:
            call.done(RuntimeError(message))
        self.current = []

    def close(self) -> None:
        self.fail_all("model unloaded")

"""The inline completion state of one editor: options, the completion cache, the cross-file
context ring and its sticky picks, the generation in flight, the background warm-up of the
context's KV, and reuse figures. The LSP handler calls `CompletionSession.complete`.

Per request: the cache (an exact repeat, or the rest of a suggestion the user typed through);
else the generation in flight when its output so far starts with what was typed since it began
(it keeps running: the ghost text is its answer minus the typed text); else a new generation,
whose prompt shares as many leading tokens with the last one as the layout allows
(`sidecar.completion.prompt`), so the engine's prompt cache prefills only what is new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections import deque
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any, Literal

from sidecar.completion.cache import CompletionCache
from sidecar.completion.context import HEADER_TOKENS, Chunk, ContextRing, as_files, sticky, uri_path
from sidecar.completion.generation import BLOCK_END, Generation, Handle, Later, Place, call_later
from sidecar.completion.options import CompletionOptions
from sidecar.completion.prompt import (
    CompletionPrompt,
    build_completion_prompt,
    token_counter,
    vocab_of,
)
from sidecar.completion.related import RelatedContext
from sidecar.engine.engine import Engine
from sidecar.engine.requests import GenerateRequest, Priority, Result
from sidecar.models.pool import LoadedModel

log = logging.getLogger(__name__)
Source = Literal["cache", "adopted", "model", "empty"]
RECENT = 256  # generations whose reuse figures `stats` reports
WARM_DELAY_S = 1.0  # like llama.vscode's ring update every second: after typing settles
COUNT_MEMO = 512


@dataclass
class Completion:
    text: str  # ghost text to insert at the cursor ("" when nothing useful came)
    model: str
    source: Source
    raw: str = ""  # what the model generated (so far)
    prompt_tokens: int = 0  # of the generation that answered, once it ended (else 0)
    cached_prompt_tokens: int = 0  # of those, served from the prompt cache
    completion_tokens: int = 0
    latency_s: float = 0.0
    finish_reason: str = "stop"
    cut_short: bool = False  # the time budget ended the wait before the generation did


@dataclass
class Reuse:
    cached: int
    prompt: int

    @property
    def share(self) -> float:
        return self.cached / self.prompt if self.prompt else 0.0


class CompletionSession:
    def __init__(
        self,
        engine: Engine,
        options: CompletionOptions | None = None,
        later: Later = call_later,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        # Timers and the typing clock: the real ones except in tests, which step them.
        self.later = later
        self.clock = clock
        self.options = options or CompletionOptions()
        self.cache = CompletionCache(self.options.cache_size)
        self.ring = ContextRing(self.options.ring_chunks, self.options.chunk_lines)
        self.repo: str | None = None  # the workspace folder's name, for repo-level formats
        # The generation in flight per document (None: a request without a document): many
        # buffers complete at once; a keystroke supersedes only its own buffer's generation.
        self.inflight: dict[str | None, Generation] = {}
        self.picked: list[Chunk] = []
        self.reuse: deque[Reuse] = deque(maxlen=RECENT)
        self.counts = {"cache": 0, "adopted": 0, "model": 0, "empty": 0, "cut_short": 0}
        self.warm_prefilled = 0  # prompt tokens the warm-up prefilled
        self.active: tuple[str, str] | None = None  # (model, uri) of the last request
        self._vocab: dict[str, Container[str] | None] = {}  # per model id
        self._token_counts: dict[str, int] = {}
        self._warm_handle: Handle | None = None
        self._warm_task: asyncio.Task[Result | None] | None = None
        self._warmed: list[int] = []
        # Workspace-index candidates after the ring's (set by the LSP layer; sidecar/lsp/workspace.py).
        self.related: RelatedContext | None = None
        self.last_request_at = 0.0  # `clock()` of the last completion request

    # -- settings --------------------------------------------------------------------------

    def configure(self, options: CompletionOptions) -> None:
        """Adopt new options: the ring is rebuilt when its size changed; other answers need
        another cache when anything changed."""
        old, self.options = self.options, options
        if (options.ring_chunks, options.chunk_lines) != (old.ring_chunks, old.chunk_lines):
            self.ring = ContextRing(options.ring_chunks, options.chunk_lines)
            self.picked = []
        if options != old:
            self.cache = CompletionCache(options.cache_size)

    def model_changed(self) -> None:
        self.cache.clear()
        for gen in list(self.inflight.values()):
            gen.abandon()

    # -- documents -------------------------------------------------------------------------

    def note(self, uri: str, text: str, line: int) -> None:
        version = self.ring.version
        self.ring.note(uri, text, line)
        if self.ring.version != version:
            self.schedule_warm()

    def closed(self, uri: str) -> None:
        """A closed document leaves the context, and its generation stops."""
        version = self.ring.version
        self.ring.forget(uri)
        if self.related is not None:
            self.related.forget(uri)
        gen = self.inflight.get(uri)
        if gen is not None:
            gen.abandon()
        if self.active and self.active[1] == uri:
            self.active = None
        elif self.ring.version != version:
            self.schedule_warm()

    # -- completion ------------------------------------------------------------------------

    async def complete(
        self, model: str, prefix: str, suffix: str, uri: str | None = None
    ) -> Completion:
        """Ghost text for the cursor between `prefix` and `suffix`, within the time budget.
        Cancelling the caller leaves the generation to the next request (or its grace)."""
        started = time.perf_counter()
        since = asyncio.get_running_loop().time()
        self.last_request_at = self.clock()  # the user is typing (background work waits)
        budget_s = self.options.max_time_ms / 1000
        hit = self.cache.get(prefix, suffix)
        if hit is not None:
            return self._counted(Completion(hit, model, "cache", latency_s=_since(started)))
        place = Place(uri, prefix, suffix)
        gen = self.inflight.get(uri)
        typed = gen.serves(place) if gen is not None else None
        if gen is not None and typed is None:
            gen.abandon()
        if gen is None or typed is None:
            typed = ""
            gen = await self._start(model, place)
            if gen is None:
                return self._counted(Completion("", model, "empty", latency_s=_since(started)))
            source: Source = "model"
            # The budget is the generation's decoding: a model that had to load first (the
            # editor's first request) and the prefill do not spend it.
            since = asyncio.get_running_loop().time()
        else:
            gen.adoptions += 1
            source = "adopted"
        if typed and gen.written_past(typed):
            ended = gen.keep()  # typing through it: its next finished line shows at once
        else:
            ended = await gen.wait(budget_s, since)
        if gen.error is not None and not gen.abandoned:
            raise gen.error
        text = gen.ghost_text(complete_lines=not ended)
        text = text[len(typed) :] if text.startswith(typed) else ""
        result = gen.result
        completion = Completion(
            text=text,
            model=gen.request.model or model,
            source=source,
            raw=gen.text,
            prompt_tokens=result.prompt_tokens if result else 0,
            cached_prompt_tokens=result.cached_prompt_tokens if result else 0,
            completion_tokens=result.completion_tokens if result else 0,
            latency_s=_since(started),
            finish_reason=result.finish_reason if result else "cancelled",
            cut_short=not ended,
        )
        return self._counted(completion)

    async def _start(self, model: str, place: Place) -> Generation | None:
        loaded = await self.engine.load(model)
        if place.uri is not None:
            self.active = (loaded.id, place.uri)
        prompt = self.prompt_for(loaded, place)
        if prompt is None:
            return None
        stop = [*prompt.stop, "\n" if Generation.is_mid_line(place) else BLOCK_END]
        request = GenerateRequest(
            prompt=prompt.prompt,
            model=loaded.id,
            max_tokens=self.options.max_tokens,
            temperature=self.options.temperature,
            stop=stop,
            priority=Priority.COMPLETION,
        )
        request.validate()
        gen = Generation(self.engine, request, prompt, place, self._ended, self.later)
        self.inflight[place.uri] = gen
        return gen

    def prompt_for(self, loaded: LoadedModel, place: Place) -> CompletionPrompt | None:
        """The prompt for `place` (None for an empty buffer); the sticky context picks move."""
        if not (place.prefix + place.suffix).strip():
            return None
        options = self.options
        if not loaded.info.fim and options.fallback == "prefix" and not place.prefix.strip():
            return None  # nothing to continue (line 1, column 0 of a model without FIM tokens)
        tokenizer = loaded.tokenizer
        if loaded.id not in self._vocab:  # `fim` comes with the model; its vocabulary too
            self._vocab[loaded.id] = vocab_of(tokenizer) if loaded.info.fim else None
        return build_completion_prompt(
            tokenizer,
            loaded.info.fim,
            place.prefix,
            place.suffix,
            prefix_tokens=options.prefix_tokens,
            suffix_tokens=options.suffix_tokens,
            extra_files=self._context(place.uri, tokenizer, place.prefix) or None,
            fallback=options.fallback,
            path=uri_path(place.uri) if place.uri else None,
            repo=self.repo,
            vocab=self._vocab[loaded.id],
        )

    def _context(self, uri: str | None, tokenizer: Any, prefix: str = "") -> list[tuple[str, str]]:
        if uri is None or not self.options.context_tokens:
            return []
        count = self._counter(tokenizer)
        fresh = self.ring.pick(uri, self.options.context_tokens, count)
        if self.related is not None:  # workspace chunks in what the ring leaves of the budget
            left = self.options.context_tokens - sum(count(c.text) + HEADER_TOKENS for c in fresh)
            for chunk in self.related.get(uri, prefix):
                cost = count(chunk.text) + HEADER_TOKENS
                if cost <= left and all(c.uri != chunk.uri for c in fresh):
                    fresh.insert(0, chunk)  # older than the ring's: farthest from the cursor
                    left -= cost
        self.picked = sticky(self.picked, fresh)
        return as_files(self.picked)

    def _counter(self, tokenizer: Any) -> Any:
        count = token_counter(tokenizer)
        memo = self._token_counts

        def counted(text: str) -> int:
            if text not in memo:
                if len(memo) > COUNT_MEMO:
                    memo.clear()
                memo[text] = count(text)
            return memo[text]

        return counted

    def _ended(self, gen: Generation) -> None:
        if self.inflight.get(gen.place.uri) is gen:
            del self.inflight[gen.place.uri]
        result = gen.result
        if result is not None and result.completion_tokens > 0:  # it ran past its prefill
            self.reuse.append(Reuse(result.cached_prompt_tokens, result.prompt_tokens))
        if gen.final:
            self.cache.put(gen.place.prefix, gen.place.suffix, gen.ghost_text())
        elif (gen.error is None or gen.abandoned) and gen.first_line_done():
            # Cut short by the time budget, or nobody waited to its end: its finished lines
            # are still the model's answer for its place (what the editor showed, or more), so
            # typing through them needs no new generation.
            self.cache.put(gen.place.prefix, gen.place.suffix, gen.ghost_text(complete_lines=True))
        self.schedule_warm()

    def _counted(self, completion: Completion) -> Completion:
        self.counts[completion.source] += 1
        self.counts["cut_short"] += completion.cut_short
        return completion

    # -- warm-up ---------------------------------------------------------------------------

    def schedule_warm(self) -> None:
        """Prefill the context head's KV once the engine is idle (at BULK priority), so the
        next completion reuses it instead of prefilling it while the user waits."""
        if not self.options.context_tokens or self.active is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # noted outside a loop (tests, replays): nothing to warm with
            return
        if self._warm_handle is not None:
            self._warm_handle.cancel()
        self._warm_handle = self.later(WARM_DELAY_S, self._spawn_warm)

    def _spawn_warm(self) -> None:
        self._warm_handle = None
        if self._warm_task is None or self._warm_task.done():
            self._warm_task = asyncio.create_task(self.warm())

    def busy(self) -> bool:
        status = self.engine.status()
        return bool(status.running or status.queue_depth or self.inflight)

    async def warm(self) -> Result | None:
        """Run the warm-up now (when the engine is idle): the result of the BULK request,
        or None when there was nothing new to warm."""
        if self.active is None:
            return None
        if self.busy():
            self.schedule_warm()
            return None
        model, uri = self.active
        loaded = self.engine.pool.get(model)
        if loaded is None:  # unloaded since: warming would load it again
            return None
        prompt = self.prompt_for(loaded, Place(uri, "_", ""))  # the head ignores the place
        if prompt is None or not isinstance(prompt.prompt, list) or prompt.head_tokens < 2:
            return None
        head = prompt.prompt[: prompt.head_tokens]
        if head == self._warmed:
            return None
        request = GenerateRequest(
            prompt=head, model=loaded.id, max_tokens=1, priority=Priority.BULK
        )
        try:
            result = await self.engine.complete(request)
        except Exception as e:  # a warm-up must never fail anything else
            log.debug("context warm-up failed: %s", e)
            return None
        self._warmed = head
        self.warm_prefilled += result.prompt_tokens - result.cached_prompt_tokens
        return result

    async def close(self) -> None:
        if self._warm_handle is not None:
            self._warm_handle.cancel()
        gens = list(self.inflight.values())
        for gen in gens:
            gen.abandon()
        for task in (self._warm_task, *(gen.task for gen in gens)):
            if task is not None:
                with contextlib.suppress(BaseException):
                    await task

    # -- figures ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Reuse of recent generations' prompts, and where answers came from: for
        `mlx/status` (the `completion_session` part) and the typing benchmark."""
        shares = [r.share for r in self.reuse]
        return {
            "generations": len(self.reuse),
            "reuse_share_median": round(statistics.median(shares), 4) if shares else None,
            "prompt_tokens": sum(r.prompt for r in self.reuse),
            "cached_prompt_tokens": sum(r.cached for r in self.reuse),
            "recent": [[r.cached, r.prompt] for r in self.reuse],
            "answers": dict(self.counts),
            "warm_prefilled_tokens": self.warm_prefilled,
            "context_chunks": len(self.picked),
            "ring_chunks": len(self.ring.chunks),
        }


def _since(started: float) -> float:
    return time.perf_counter() - started

"""The engine's async API, used by the JSON-RPC server, the HTTP port and the CLI: a facade over
the model pool, the memory governor and the runners, which do the work.

Everything MLX runs on one worker thread; results come back to the asyncio loop with
`loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from sidecar import tracing
from sidecar.config import Settings
from sidecar.engine.constraints import make_guide
from sidecar.engine.embed_runner import EmbedCall, EmbedRunner
from sidecar.engine.factory import default_prefill_chunk, make_runner
from sidecar.engine.images import load_images
from sidecar.engine.memory import MemoryGovernor, apply_mlx_limits, restore_mlx_limits
from sidecar.engine.messages import encode
from sidecar.engine.observe import (
    embed_attributes,
    end_generation_span,
    generation_span,
    local_usage,
)
from sidecar.engine.requests import Delta, Embeddings, GenerateRequest, Priority, Result
from sidecar.engine.runner import GenerateRunner, Runner
from sidecar.engine.scheduler import Scheduler, WaitTimes, oldest_wait_s, share_weights
from sidecar.engine.sequence import Sequence
from sidecar.engine.status import Metrics, engine_status
from sidecar.engine.text_runner import TextRunner
from sidecar.engine.worker import Worker
from sidecar.errors import EngineError, WrongModelKindError
from sidecar.mlx_cleanup import to_thread_clearing
from sidecar.models.defaults import info_installing_defaults
from sidecar.models.kinds import ModelKind
from sidecar.models.pool import LoadedModel, ModelPool
from sidecar.models.store import ModelInfo, ModelStore
from sidecar.usage.events import UsageEvent
from sidecar.usage.store import UsageStore
from sidecar.wire import EngineStatus

Event = Delta | Result


class Engine:
    def __init__(
        self,
        settings: Settings | None = None,
        store: ModelStore | None = None,
        usage: UsageStore | None = None,
    ) -> None:
        self.settings = settings or Settings()
        # The usage ledger (opened by the command line on `Settings.usage_db`); None: not kept.
        self.usage = usage
        self.store = store or ModelStore(self.settings.models_dir, self.settings.use_hf_cache)
        self.pool = ModelPool(
            self.store,
            self.settings.memory_budget_bytes,
            self._make_runner,
            idle_ttl_s=self.settings.idle_ttl_s,
        )
        self.governor = MemoryGovernor(
            self.pool.budget_bytes,
            lambda: self.pool.used_bytes + self.pool.reserved_bytes,
            self._prompt_caches,
            self.settings.prompt_cache_idle_s,
        )
        self.pool.held_bytes = self.governor.kv_bytes
        self.pool.before_load = self.governor.make_room
        self.worker = Worker(
            self.runners,
            self._on_idle,
            self.settings.watchdog_step_s,
            Scheduler(share_weights(self.settings.completion_share)),
        )
        self.waits = WaitTimes()
        self.prefill_chunk = self.settings.prefill_chunk or default_prefill_chunk()
        self.metrics = Metrics()
        self._active: dict[str, Sequence] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mlx_limits: tuple[int, int] | None = None  # MLX's limits before start
        self.started_at = time.time()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> Engine:
        self._loop = asyncio.get_running_loop()
        self._mlx_limits = apply_mlx_limits(self.pool.budget_bytes)
        self.worker.start()
        return self

    async def close(self) -> None:
        for seq in list(self._active.values()):
            seq.cancel()
        await self._on_worker(self.pool.unload_all)
        self.worker.stop()
        if self._mlx_limits is not None:
            restore_mlx_limits(self._mlx_limits)

    async def __aenter__(self) -> Engine:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _make_runner(self, info: ModelInfo, model: Any, tokenizer: Any) -> Runner | None:
        return make_runner(self, info, model, tokenizer)

    def runners(self) -> list[Runner]:
        return [m.runner for m in list(self.pool.models.values()) if m.runner is not None]

    def _prompt_caches(self) -> list[Any]:
        return [r.prompt_cache for r in self.runners() if isinstance(r, TextRunner)]

    def most_urgent_work(self) -> Priority | None:
        """The most urgent class of work started or waiting on any runner (None: idle). Read on
        the event loop while the worker runs: a snapshot, good for deciding when to yield."""
        return min((u for r in self.runners() if (u := r.urgency()) is not None), default=None)

    def generating(self) -> bool:
        """Whether a text or vision runner has work (worker thread)."""
        return any(
            r.urgency() is not None for r in self.runners() if not isinstance(r, EmbedRunner)
        )

    def _on_idle(self) -> None:
        """Worker thread, nothing to run: unload what idled past its TTL; the governor hands
        memory back (see `MemoryGovernor.on_idle`)."""
        self.pool.unload_idle()
        self.governor.on_idle()

    def record_usage(self, event: UsageEvent) -> None:
        """The `UsageSink` for everything this process serves (local here, upstreams too)."""
        if self.usage is not None:
            self.usage.record(event)

    async def _on_worker(self, fn: Any) -> Any:
        return await asyncio.wrap_future(self.worker.call(fn))

    # -- models ------------------------------------------------------------------------------

    def default_model(self, kind: ModelKind) -> str:
        return self.settings.embedding_model if kind == "embedding" else self.settings.chat_model

    async def load(self, model_id: str, pin: bool | None = None) -> LoadedModel:
        """Load a model (no-op when loaded); other models keep decoding meanwhile."""
        loaded = self.pool.get(model_id)
        if loaded is not None:
            loaded.last_used = time.monotonic()
            if pin is not None:
                loaded.pinned = pin
            return loaded
        info = await to_thread_clearing(info_installing_defaults, self.store, model_id)
        # weights load a chunk per worker round trip: running batches keep stepping
        return await self.pool.load_async(info, pin, self.worker.call)

    async def unload(self, model_id: str) -> bool:
        return await self._on_worker(lambda: self.pool.unload(model_id))

    async def _ensure(self, model_id: str | None, kinds: tuple[ModelKind, ...]) -> LoadedModel:
        loaded = await self.load(model_id or self.default_model(kinds[0]))
        if loaded.kind not in kinds:
            raise WrongModelKindError(
                f"model {loaded.id!r} is a {loaded.kind} model; this needs a "
                f"{' or '.join(kinds)} model"
            )
        loaded.last_used = time.monotonic()
        return loaded

    # -- text --------------------------------------------------------------------------------

    async def text_model(self, model: str | None = None) -> LoadedModel:
        """The loaded text (or vision) model `model` names (None: the default chat model)."""
        return await self._ensure(model, ("text", "vision"))

    async def tokenize(self, text: str, model: str | None = None) -> list[int]:
        loaded = await self._ensure(model, ("text", "vision"))
        return encode(loaded.runner.tokenizer, text)

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Event]:
        """Text deltas as they are made, then one `Result`. Leaving the loop early (or the
        task being cancelled) cancels the request; its batch slot frees at the next step."""
        request.validate()
        loaded = await self._ensure(request.model, ("text", "vision"))
        runner: GenerateRunner = loaded.runner
        runner.accept(request)
        guide = None
        if request.constraint is not None:
            # Off the loop: the first grammar for a tokenizer builds its token trie (~0.4 s).
            guide = await asyncio.to_thread(
                make_guide, request.constraint, runner.tokenizer, runner.stop_ids
            )
        assert self._loop is not None, "engine not started"
        queue: asyncio.Queue[Event] = asyncio.Queue()
        loop = self._loop
        started = time.monotonic()

        def deliver(event: Event) -> None:
            if isinstance(event, Result):  # counted even when nobody reads the stream anymore
                self.metrics.record(event)
                self.record_usage(local_usage(request, event, time.monotonic() - started))
            queue.put_nowait(event)

        def sink(event: Event) -> None:
            loop.call_soon_threadsafe(deliver, event)

        held = 0  # bytes of decoded images counted against the memory budget

        def hold(nbytes: int) -> None:
            nonlocal held
            self.governor.hold_images(nbytes)
            held = nbytes

        try:
            images: list[Any] = []
            if request.images:
                limits = self.settings.limits
                images = (await asyncio.to_thread(load_images, request.images, limits, hold)).images
            job = runner.new_job(request, sink, images, guide)
        except BaseException:
            self.governor.release_images(held)
            raise
        seq = job.seq
        span = generation_span(loaded, request, seq)
        self._active[request.request_id] = seq
        self.governor.mark_busy()
        self.worker.call(lambda: runner.submit(job))
        finished: Result | None = None
        try:
            while True:
                event = await queue.get()
                if isinstance(event, Result):
                    finished = event
                    loaded.last_used = time.monotonic()
                    yield event
                    return
                yield event
        finally:
            self._active.pop(request.request_id, None)
            self.governor.release_images(held)
            if finished is None:
                seq.cancel()
                self.worker.wake()
            end_generation_span(span, seq, finished)

    async def complete(self, request: GenerateRequest) -> Result:
        """Run a request to the end and return its result."""
        result = None
        async for event in self.generate(request):
            if isinstance(event, Result):
                result = event
        assert result is not None
        return result

    def cancel(self, request_id: str) -> bool:
        """Stop a request; it ends with finish_reason 'cancelled' at the next step."""
        seq = self._active.get(request_id)
        if seq is None:
            return False
        seq.cancel()
        self.worker.wake()
        return True

    # -- embeddings --------------------------------------------------------------------------

    async def embed(
        self, texts: list[str], model: str | None = None, priority: Priority | None = None
    ) -> Embeddings:
        """Vectors for `texts`. A few texts run as a query (CHAT class), more as BULK, unless
        `priority` says otherwise."""
        assert self._loop is not None, "engine not started"
        call, fut = EmbedCall.answered_on(self._loop, texts, priority)
        loaded = await self._ensure(model, ("embedding",))
        runner: EmbedRunner = loaded.runner
        self.governor.mark_busy()
        started = time.monotonic()
        self.worker.call(lambda: runner.submit(call))
        try:
            with tracing.span("engine.embed", embed_attributes(loaded.id, texts)) as span:
                result = await fut
                tracing.set_attributes(span, {"gen_ai.usage.input_tokens": result.prompt_tokens})
        except EngineError:
            self.record_usage(
                UsageEvent(loaded.id, "embedding", latency_s=time.monotonic() - started, error=True)
            )
            raise
        self.record_usage(
            UsageEvent(loaded.id, "embedding", result.prompt_tokens, 0, time.monotonic() - started)
        )
        self.metrics.embed_texts += len(texts)
        loaded.last_used = time.monotonic()
        return result

    def oldest_wait_s(self, priority: Priority) -> float:
        """How long the oldest text request at least as urgent as `priority` has waited so far
        without starting (0 when none waits): a new request of that class waits at least as
        long, so the router falls back to an upstream past a bound (sidecar/upstreams/router)."""
        return oldest_wait_s(list(self._active.values()), priority, time.perf_counter())

    def status(self) -> EngineStatus:
        return engine_status(self)

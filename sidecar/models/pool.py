"""Loaded models under a memory budget: load on demand, evict the least recently used model that
is neither pinned nor running requests, unload after an idle TTL. Sizes are measured (MLX active
memory before and after the load), not guessed from names.

Every method here runs on the engine's worker thread (MLX thread affinity), except
`load_async`, which the engine awaits on its event loop: it builds the model with lazy weights
and evaluates them a chunk (~64 MB) per worker round trip, so running batches keep stepping
between chunks while a large model loads.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx

from sidecar.errors import InsufficientMemory, ModelLoadError
from sidecar.mlx_cleanup import release_memory
from sidecar.models.kinds import ModelKind
from sidecar.models.limits import check_token_ids, context_length_of, vocab_size_of
from sidecar.models.loader import load_model, load_tokenizer
from sidecar.models.sizes import (
    default_budget,
    estimate_bytes,
    parameters,
    weight_chunks,
)
from sidecar.models.store import ModelInfo, ModelStore

log = logging.getLogger(__name__)

MiB = 2**20


@dataclass
class LoadedModel:
    info: ModelInfo
    model: Any
    tokenizer: Any
    runner: Any
    size_bytes: int
    loaded_at: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    pinned: bool = False

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def kind(self) -> ModelKind:
        return self.info.kind

    @property
    def context_length(self) -> int:
        return context_length_of(self.model)

    @property
    def vocab_size(self) -> int:
        return vocab_size_of(self.model, self.tokenizer)

    def check_token_ids(self, ids: list[int]) -> None:
        """Refuse ids the model cannot take, with a clear error instead of a crash."""
        check_token_ids(ids, self.vocab_size)

    @property
    def busy(self) -> bool:
        return self.runner is not None and self.runner.urgency() is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "size_bytes": self.size_bytes,
            "pinned": self.pinned,
            "idle_s": round(time.monotonic() - self.last_used, 1),
            "busy": self.busy,
        }


@dataclass
class PendingLoad:
    """A model being loaded: built, weights evaluated chunk by chunk."""

    info: ModelInfo
    pin: bool | None
    estimate: int
    model: Any
    tokenizer: Any
    chunks: list[list[mx.array]]
    active_before: int
    started: float
    shared_worker: bool = False  # other models ran while it loaded: active memory is mixed


RunnerFactory = Callable[[ModelInfo, Any, Any], Any]
WorkerCall = Callable[[Callable[[], Any]], Future]


class ModelPool:
    """`budget_bytes` None or <= 0 means the default (half the machine's RAM); `idle_ttl_s`
    None or <= 0 means models stay loaded until evicted or unloaded."""

    def __init__(
        self,
        store: ModelStore,
        budget_bytes: int | None,
        make_runner: RunnerFactory,
        idle_ttl_s: float | None = None,
    ) -> None:
        self.store = store
        self.budget_bytes = budget_bytes if budget_bytes and budget_bytes > 0 else default_budget()
        self.idle_ttl_s = idle_ttl_s
        self.make_runner = make_runner
        self.models: dict[str, LoadedModel] = {}
        self.pending: dict[str, PendingLoad] = {}
        self.events: list[str] = []  # human-readable load/evict log, newest last
        self._loading: dict[str, asyncio.Future[LoadedModel]] = {}
        # The rest of the memory budget (sidecar/engine/memory.py): KV reserved for running
        # sequences counts against a load, and prompt caches make room first.
        self.held_bytes: Callable[[], int] = lambda: 0
        self.before_load: Callable[[int], None] = lambda _needed: None

    @property
    def used_bytes(self) -> int:
        return sum(m.size_bytes for m in self.models.values())

    @property
    def reserved_bytes(self) -> int:
        """Estimated size of the models being loaded right now."""
        return sum(p.estimate for p in self.pending.values())

    def get(self, model_id: str) -> LoadedModel | None:
        if model_id in self.models:
            return self.models[model_id]
        try:
            return self.models.get(self.store.resolve_id(model_id))
        except (LookupError, ValueError):
            return None

    def _evict_for(self, needed: int, keep: str | None = None) -> None:
        """Unload least recently used models (never pinned, busy or `keep`) until `needed`
        more bytes fit in the budget beside the loaded and loading models."""
        while (
            self.used_bytes + self.reserved_bytes + self.held_bytes() + needed > self.budget_bytes
        ):
            victims = sorted(
                (m for m in self.models.values() if not m.pinned and not m.busy and m.id != keep),
                key=lambda m: m.last_used,
            )
            if not victims:
                free = self.budget_bytes - self.used_bytes - self.reserved_bytes - self.held_bytes()
                raise InsufficientMemory(
                    f"need {needed / MiB:.0f} MiB but only {max(free, 0) / MiB:.0f} MiB of the "
                    f"{self.budget_bytes / MiB:.0f} MiB memory budget is free, and every "
                    "loaded model is pinned or busy (running requests' KV counts too)"
                )
            self._log(f"evict {victims[0].id} (least recently used)")
            self.unload(victims[0].id)

    def _log(self, event: str) -> None:
        event = f"{event}; models {self.used_bytes / MiB:.0f}/{self.budget_bytes / MiB:.0f} MiB"
        log.info(event)
        self.events = [*self.events[-49:], event]

    # -- loading ------------------------------------------------------------------------------

    def begin_load(
        self, model: str | ModelInfo, pin: bool | None = None, tokenizer: Any | None = None
    ) -> LoadedModel | PendingLoad:
        """Make room, then build the model with its weights still lazy (and `tokenizer`, when
        it was loaded beforehand). Returns the loaded model when it is already loaded."""
        info = model if isinstance(model, ModelInfo) else self.store.info(model)
        if info.id in self.models:
            loaded = self.models[info.id]
            loaded.last_used = time.monotonic()
            if pin is not None:
                loaded.pinned = pin
            return loaded
        estimate = estimate_bytes(info)
        if estimate > self.budget_bytes:
            raise InsufficientMemory(
                f"model {info.id} needs about {estimate / MiB:.0f} MiB, over the whole "
                f"memory budget of {self.budget_bytes / MiB:.0f} MiB"
            )
        self.before_load(estimate)
        self._evict_for(estimate)
        gc.collect()
        before = mx.get_active_memory()
        started = time.perf_counter()
        try:
            model, tokenizer = load_model(info.path, info.kind, lazy=True, tokenizer=tokenizer)
        except Exception:
            self._cleanup()
            self._log(f"load {info.id} failed")
            raise
        pending = PendingLoad(
            info, pin, estimate, model, tokenizer, weight_chunks(model), before, started
        )
        self.pending[info.id] = pending
        return pending

    def load_chunk(self, pending: PendingLoad, index: int) -> None:
        if any(m.busy for m in self.models.values()):
            pending.shared_worker = True
        mx.eval(pending.chunks[index])

    def finish_load(self, pending: PendingLoad) -> LoadedModel:
        info = pending.info
        self.pending.pop(info.id, None)
        mx.eval(pending.model.parameters())  # anything the chunks did not cover
        weights = sum(a.nbytes for _, a in parameters(pending.model))
        delta = mx.get_active_memory() - pending.active_before
        # The active-memory delta is the real cost (weights plus whatever loading kept); when
        # other models ran meanwhile their caches mix in, so count the weights alone.
        size = weights if pending.shared_worker or delta <= 0 else delta
        runner = self.make_runner(info, pending.model, pending.tokenizer)
        loaded = LoadedModel(
            info, pending.model, pending.tokenizer, runner, size, pinned=bool(pending.pin)
        )
        # The worker may hold the last call's closure (and so this PendingLoad) while idle:
        # drop its references, or an unloaded model's memory could outlive the unload.
        pending.model = pending.tokenizer = None
        pending.chunks = []
        self.models[info.id] = loaded
        how = "weights" if size == weights and delta != weights else "measured"
        self._log(
            f"load {info.id} ({size / MiB:.0f} MiB {how}, {pending.estimate / MiB:.0f} MiB "
            f"estimated, {time.perf_counter() - pending.started:.1f} s)"
        )
        try:  # the measured size can exceed the estimate: make room behind it
            self._evict_for(0, keep=info.id)
        except InsufficientMemory:
            log.warning("%s is loaded over the memory budget", info.id)
        return loaded

    def abort_load(self, pending: PendingLoad) -> None:
        self.pending.pop(pending.info.id, None)
        pending.model = pending.tokenizer = None
        pending.chunks = []
        self._cleanup()
        self._log(f"load {pending.info.id} abandoned")

    async def load_async(
        self, model: str | ModelInfo, pin: bool | None, call: WorkerCall
    ) -> LoadedModel:
        """Load from the event loop, one worker round trip per weight chunk (`call` runs a
        function on the worker thread), so running batches step between chunks. Concurrent
        loads of one model share the work."""
        info = (
            model
            if isinstance(model, ModelInfo)
            else await asyncio.to_thread(self.store.info, model)
        )
        model_id = info.id
        if model_id in self._loading:
            loaded = await asyncio.shield(self._loading[model_id])
            if pin is not None:
                loaded.pinned = pin
            return loaded
        done: asyncio.Future[LoadedModel] = asyncio.get_running_loop().create_future()
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._loading[model_id] = done
        pending: PendingLoad | None = None
        try:
            tokenizer = None
            if info.id not in self.models:  # the tokenizer needs no MLX: build it off the worker
                tokenizer = await asyncio.to_thread(load_tokenizer, info.path, info.kind)
            begun = call(lambda: self.begin_load(info, pin, tokenizer))
            try:
                first = await asyncio.wrap_future(begun)
            except asyncio.CancelledError:  # it may still begin on the worker: undo it then
                begun.add_done_callback(lambda f: self._abort_begun(f, call))
                raise
            if isinstance(first, LoadedModel):
                loaded = first
            else:
                pending = first
                for i in range(len(pending.chunks)):
                    await asyncio.wrap_future(call(functools.partial(self.load_chunk, first, i)))
                loaded = await asyncio.wrap_future(call(lambda: self.finish_load(first)))
                pending = None
            done.set_result(loaded)
            return loaded
        except BaseException as e:
            if pending is not None:
                abandoned = pending
                call(lambda: self.abort_load(abandoned))
            if isinstance(e, Exception) and not isinstance(e, InsufficientMemory | ModelLoadError):
                # the caller's error names the model, whatever the loader raised
                failure = ModelLoadError(
                    f"model {model_id!r} failed to load: {type(e).__name__}: {e}"
                )
                if not done.done():
                    done.set_exception(failure)
                raise failure from e
            if not done.done():
                done.set_exception(
                    e if isinstance(e, Exception) else RuntimeError("load cancelled")
                )
            raise
        finally:
            self._loading.pop(model_id, None)

    def _abort_begun(self, begun: Future, call: WorkerCall) -> None:
        if begun.cancelled() or begun.exception() is not None:
            return
        result = begun.result()
        if isinstance(result, PendingLoad):
            call(lambda: self.abort_load(result))

    # -- unloading ----------------------------------------------------------------------------

    def unload(self, model_id: str) -> bool:
        loaded = self.get(model_id)
        if loaded is None:
            return False
        del self.models[loaded.id]
        if loaded.runner is not None:
            loaded.runner.close()
        loaded.model = loaded.runner = loaded.tokenizer = None
        self._cleanup()
        self._log(f"unload {loaded.id}")
        return True

    def unload_all(self) -> None:
        for model_id in list(self.models):
            self.unload(model_id)

    def unload_idle(self) -> list[str]:
        """Unload models unused for longer than `idle_ttl_s` (not pinned, not busy)."""
        if not self.idle_ttl_s or self.idle_ttl_s <= 0:
            return []
        now = time.monotonic()
        idle = [
            m.id
            for m in self.models.values()
            if not m.pinned and not m.busy and now - m.last_used > self.idle_ttl_s
        ]
        for mid in idle:
            self._log(f"idle {mid} for over {self.idle_ttl_s:g} s")
            self.unload(mid)
        return idle

    @staticmethod
    def _cleanup() -> None:
        release_memory()

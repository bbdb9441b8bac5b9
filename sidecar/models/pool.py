"""Loaded models under a memory budget: load on demand, evict the least recently used model that
is neither pinned nor running requests, unload after an idle TTL. Sizes are measured (MLX active
memory before and after the load), not guessed from names.

`load`, `unload` and `unload_idle` run on the engine's worker thread (MLX thread affinity).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx

from sidecar.models.kinds import ModelKind
from sidecar.models.loader import load_model
from sidecar.models.store import ModelInfo, ModelStore, dir_size

log = logging.getLogger(__name__)


class MemoryBudgetError(RuntimeError):
    pass


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
    def busy(self) -> bool:
        return bool(self.runner is not None and self.runner.busy)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "size_bytes": self.size_bytes,
            "pinned": self.pinned,
            "idle_s": round(time.monotonic() - self.last_used, 1),
            "busy": self.busy,
        }


RunnerFactory = Callable[[ModelInfo, Any, Any], Any]


class ModelPool:
    def __init__(
        self,
        store: ModelStore,
        budget_bytes: int,
        make_runner: RunnerFactory,
        idle_ttl_s: float | None = None,
    ) -> None:
        self.store = store
        self.budget_bytes = budget_bytes
        self.idle_ttl_s = idle_ttl_s
        self.make_runner = make_runner
        self.models: dict[str, LoadedModel] = {}
        self.events: list[str] = []  # human-readable load/evict log, newest last

    @property
    def used_bytes(self) -> int:
        return sum(m.size_bytes for m in self.models.values())

    def get(self, model_id: str) -> LoadedModel | None:
        if model_id in self.models:
            return self.models[model_id]
        try:
            return self.models.get(self.store.resolve_id(model_id))
        except (LookupError, ValueError):
            return None

    def touch(self, model_id: str) -> None:
        if model_id in self.models:
            self.models[model_id].last_used = time.monotonic()

    def _evict_for(self, needed: int) -> None:
        while self.used_bytes + needed > self.budget_bytes:
            victims = sorted(
                (m for m in self.models.values() if not m.pinned and not m.busy),
                key=lambda m: m.last_used,
            )
            if not victims:
                raise MemoryBudgetError(
                    f"need {needed / 2**20:.0f} MiB but only "
                    f"{(self.budget_bytes - self.used_bytes) / 2**20:.0f} MiB of the "
                    f"{self.budget_bytes / 2**20:.0f} MiB budget is free, and every loaded "
                    "model is pinned or busy"
                )
            self._log(f"evict {victims[0].id} (least recently used)")
            self.unload(victims[0].id)

    def _log(self, event: str) -> None:
        log.info(event)
        self.events = [*self.events[-49:], event]

    def load(self, model_id: str, pin: bool | None = None) -> LoadedModel:
        info = self.store.info(model_id)
        if info.id in self.models:
            loaded = self.models[info.id]
            loaded.last_used = time.monotonic()
            if pin is not None:
                loaded.pinned = pin
            return loaded
        estimate = weights_size(info.path)
        if estimate > self.budget_bytes:
            raise MemoryBudgetError(
                f"model {info.id} needs about {estimate / 2**20:.0f} MiB, over the whole "
                f"memory budget of {self.budget_bytes / 2**20:.0f} MiB"
            )
        self._evict_for(estimate)
        gc.collect()
        before = mx.get_active_memory()
        started = time.perf_counter()
        model, tokenizer = load_model(info.path, info.kind)
        size = max(mx.get_active_memory() - before, 0) or estimate
        runner = self.make_runner(info, model, tokenizer)
        loaded = LoadedModel(info, model, tokenizer, runner, size, pinned=bool(pin))
        self.models[info.id] = loaded
        self._log(
            f"load {info.id} ({size / 2**20:.0f} MiB, {time.perf_counter() - started:.1f} s)"
        )
        return loaded

    def unload(self, model_id: str) -> bool:
        loaded = self.get(model_id)
        if loaded is None:
            return False
        del self.models[loaded.id]
        if loaded.runner is not None:
            loaded.runner.close()
        loaded.model = loaded.runner = loaded.tokenizer = None
        gc.collect()
        mx.clear_cache()
        self._log(f"unload {loaded.id}")
        return True

    def unload_idle(self) -> list[str]:
        if not self.idle_ttl_s:
            return []
        now = time.monotonic()
        idle = [
            m.id
            for m in self.models.values()
            if not m.pinned and not m.busy and now - m.last_used > self.idle_ttl_s
        ]
        for mid in idle:
            self._log(f"idle {mid} for over {self.idle_ttl_s:.0f} s")
            self.unload(mid)
        return idle


def weights_size(path: Path) -> int:
    weights = [p for p in path.iterdir() if p.suffix in (".safetensors", ".npz")]
    return sum(p.stat().st_size for p in weights) if weights else dir_size(path)

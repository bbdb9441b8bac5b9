"""What the engine reports about itself: its running figures (`Metrics`, fed by every finished
request) and the `EngineStatus` snapshot that `mlx/status`, `/v1/status` and the dashboard read."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import mlx.core as mx

from sidecar import blas
from sidecar.engine.requests import Result
from sidecar.wire import EngineStatus

if TYPE_CHECKING:
    from sidecar.engine.engine import Engine

RECENT = 50  # requests the recent figures keep


@dataclass
class Metrics:
    requests: dict[str, int] = field(default_factory=dict)  # by finish reason
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embed_texts: int = 0
    ttft_s: list[float] = field(default_factory=list)  # recent
    tokens_per_s: list[float] = field(default_factory=list)  # recent
    token_gaps_s: list[float] = field(default_factory=list)  # recent, longest per stream

    def record(self, result: Result) -> None:
        self.requests[result.finish_reason] = self.requests.get(result.finish_reason, 0) + 1
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        if result.time_to_first_token_s is not None:
            self.ttft_s = [*self.ttft_s[-RECENT + 1 :], result.time_to_first_token_s]
        if result.tokens_per_s is not None:
            self.tokens_per_s = [*self.tokens_per_s[-RECENT + 1 :], result.tokens_per_s]
        if result.max_token_gap_s is not None:
            self.token_gaps_s = [*self.token_gaps_s[-RECENT + 1 :], result.max_token_gap_s]


def engine_status(engine: Engine) -> EngineStatus:
    """A snapshot of `engine`: loaded models, memory, queues, speeds (read on the event loop
    while the worker runs)."""
    stats = [r.stats() for r in engine.runners()]
    text = [r for r in stats if r.kind in ("text", "vision")]
    embed = [r for r in stats if r.kind == "embedding"]
    metrics, pool, governor = engine.metrics, engine.pool, engine.governor
    recent_tps = metrics.tokens_per_s[-1] if metrics.tokens_per_s else None
    gaps = metrics.token_gaps_s
    health_reason = engine.worker.health_reason()
    kv, prompt_cache = governor.kv_bytes(), governor.prompt_cache_bytes()
    status = {
        "healthy": health_reason is None,
        "health_reason": health_reason,
        "loaded": [m.to_dict() for m in pool.models.values()],
        "memory": {
            "active_bytes": mx.get_active_memory(),
            "cache_bytes": mx.get_cache_memory(),
            "peak_bytes": mx.get_peak_memory(),
            "budget_bytes": pool.budget_bytes,
            "models_bytes": pool.used_bytes,
            "kv_bytes": kv,
            "prompt_cache_bytes": prompt_cache,
            "used_bytes": pool.used_bytes + kv + prompt_cache,
            "refused_requests": governor.refused,
            "evicted_prompt_cache_bytes": governor.evicted_prompt_cache_bytes,
        },
        "device": str(mx.default_device()),
        "blas": blas.loaded_path,
        "prefill_chunk": engine.prefill_chunk,
        "queue_depth": sum(r.queue_depth for r in stats),
        "running": sum(r.running for r in text),
        "runners": [r.to_dict() for r in stats],
        "queue_wait_s": engine.waits.snapshot(),
        "token_gap_s": {
            "recent_max": round(max(gaps), 6) if gaps else None,
            "recent_median": round(sorted(gaps)[len(gaps) // 2], 6) if gaps else None,
        },
        "max_batch_seen": max((r.max_batch_seen for r in text), default=0),
        "reused_prompt_tokens": sum(r.reused_prompt_tokens for r in text),
        "prefilled_tokens": sum(r.prefilled_tokens for r in text),
        "draft_tokens": {
            "drafted": sum(r.drafted_tokens for r in text),
            "accepted": sum(r.accepted_tokens for r in text),
        },
        "max_embed_batch_seen": max((r.max_batch_seen for r in embed), default=0),
        "recent_tokens_per_s": recent_tps,
        "requests": dict(metrics.requests),
        "completion_tokens": metrics.completion_tokens,
        "prompt_tokens": metrics.prompt_tokens,
        "uptime_s": round(time.time() - engine.started_at, 1),
        "usage": [t.to_wire() for t in engine.usage.totals()] if engine.usage else [],
    }
    return EngineStatus.model_validate(status)  # a key missing from sidecar/wire.py raises

"""What the engine reports about each request besides its result: the usage ledger's event and
the OpenTelemetry spans (`engine.generate` with `queue_wait`, `prefill`, `decode`; `engine.embed`),
drawn from the sequence's timestamps once the request ends (see sidecar/tracing.py)."""

from __future__ import annotations

import time
from typing import Any

from sidecar import tracing
from sidecar.engine.requests import GenerateRequest, Priority, Result
from sidecar.engine.sequence import Sequence
from sidecar.models.pool import LoadedModel
from sidecar.usage.events import UsageEvent


def generation_span(loaded: LoadedModel, request: GenerateRequest, seq: Sequence) -> Any:
    """`engine.generate` under the edge's span (None when tracing is off)."""
    if not tracing.enabled():
        return None
    span = tracing.start(
        "engine.generate",
        {
            "mlx_sidecar.model": loaded.id,
            "mlx_sidecar.upstream": "local",
            "mlx_sidecar.priority": request.priority.name.lower(),
            "mlx_sidecar.request_id": request.request_id,
            "gen_ai.request.model": loaded.id,
            "gen_ai.request.max_tokens": seq.max_tokens,
            "gen_ai.usage.input_tokens": len(seq.prompt_tokens),
        },
        start_s=seq.submitted_at,
    )
    if tracing.include_prompts():
        prompt = request.prompt
        text = prompt if isinstance(prompt, str) else loaded.tokenizer.decode(seq.prompt_tokens)
        tracing.set_attributes(span, {"mlx_sidecar.prompt": text})
    return span


def end_generation_span(span: Any, seq: Sequence, result: Result | None) -> None:
    """Its attributes from the result and its queue wait, prefill and decode children from
    the sequence's timestamps (taken on the worker)."""
    if span is None:
        return
    now = time.perf_counter()
    started, first = seq.started_at, seq.first_token_at
    if started is not None:
        tracing.child(span, "queue_wait", seq.submitted_at, started)
        tracing.child(span, "prefill", started, first or now, {"tokens": len(seq.prompt_tokens)})
    if first is not None:
        tokens = result.completion_tokens if result is not None else 0
        tracing.child(span, "decode", first, seq.last_token_at or now, {"tokens": tokens})
    if result is None:
        tracing.set_attributes(span, {"mlx_sidecar.finish_reason": "cancelled"})
        tracing.finish(span)
        return
    attributes: dict[str, Any] = {
        "mlx_sidecar.finish_reason": result.finish_reason,
        "gen_ai.usage.input_tokens": result.prompt_tokens,
        "gen_ai.usage.output_tokens": result.completion_tokens,
        "mlx_sidecar.cached_prompt_tokens": result.cached_prompt_tokens,
        "mlx_sidecar.ttft_s": result.time_to_first_token_s,
        "mlx_sidecar.tokens_per_s": result.tokens_per_s,
        "mlx_sidecar.queue_wait_s": started - seq.submitted_at if started is not None else None,
    }
    if tracing.include_prompts():
        attributes["mlx_sidecar.completion"] = result.text
    tracing.set_attributes(span, attributes)
    tracing.finish(span, result.error)


def embed_attributes(model: str, texts: list[str]) -> dict[str, Any]:
    if not tracing.enabled():
        return {}
    attributes: dict[str, Any] = {
        "mlx_sidecar.model": model,
        "mlx_sidecar.upstream": "local",
        "mlx_sidecar.texts": len(texts),
    }
    if tracing.include_prompts():
        attributes["mlx_sidecar.inputs"] = list(texts)
    return attributes


def local_usage(request: GenerateRequest, result: Result, latency_s: float) -> UsageEvent:
    endpoint = request.endpoint or (
        "completion" if request.priority == Priority.COMPLETION else "chat"
    )
    return UsageEvent(
        model=result.model,
        endpoint=endpoint,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        latency_s=latency_s,
        error=result.finish_reason == "error",
    )

"""Prometheus text for `/metrics`: engine counters and gauges plus HTTP requests by route."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidecar import tracing
from sidecar.engine.engine import Engine
from sidecar.wire import ModelUsage

ROUTES = {
    "/v1/models",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/health",
    "/metrics",
}


def route_of(path: str) -> str:
    if path in ROUTES:
        return path
    return "/v1/models/{id}" if path.startswith("/v1/models/") else "other"


class Traced:
    """ASGI middleware: one span per request (`POST /v1/chat/completions`) when tracing is on,
    current while the route runs and its stream is sent, so the engine's spans nest under it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing.enabled():
            await self.app(scope, receive, send)
            return
        route = route_of(scope.get("path", ""))
        attributes = {"http.request.method": scope["method"], "http.route": route}
        with tracing.span(f"{scope['method']} {route}", attributes) as span:

            async def traced_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    tracing.set_attributes(
                        span, {"http.response.status_code": int(message["status"])}
                    )
                await send(message)

            await self.app(scope, receive, traced_send)


class RequestCounter:
    """ASGI middleware counting responses by (route, status); streams count when they start."""

    def __init__(self, app: ASGIApp, counts: Counter[tuple[str, int]]) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_of(scope.get("path", ""))

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.counts[(route, int(message["status"]))] += 1
            await send(message)

        await self.app(scope, receive, counting_send)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _labels(labels: Mapping[str, Any]) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + inner + "}"


class Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self, name: str, kind: str, help_: str, samples: Sequence[tuple[Mapping[str, Any], float]]
    ) -> None:
        name = f"mlx_sidecar_{name}"
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        self.lines += [f"{name}{_labels(labels)} {value:g}" for labels, value in samples]

    def summary(
        self, name: str, help_: str, samples: list[tuple[dict[str, Any], float, int]]
    ) -> None:
        """A Prometheus summary without quantiles: `_sum` and `_count` per label set."""
        name = f"mlx_sidecar_{name}"
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} summary"]
        for labels, total, count in samples:
            self.lines += [
                f"{name}_sum{_labels(labels)} {total:g}",
                f"{name}_count{_labels(labels)} {count:g}",
            ]

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(engine: Engine, http_counts: Counter[tuple[str, int]]) -> str:
    status = engine.status()
    m = engine.metrics
    out = Exposition()
    out.metric(
        "http_requests_total",
        "counter",
        "HTTP responses by route and status.",
        [({"route": r, "status": s}, n) for (r, s), n in sorted(http_counts.items())],
    )
    out.metric(
        "generation_requests_total",
        "counter",
        "Finished generation requests by finish reason.",
        [({"finish_reason": k}, v) for k, v in sorted(m.requests.items())],
    )
    out.metric(
        "prompt_tokens_total", "counter", "Prompt tokens processed.", [({}, m.prompt_tokens)]
    )
    out.metric(
        "completion_tokens_total", "counter", "Tokens generated.", [({}, m.completion_tokens)]
    )
    out.metric("embedded_texts_total", "counter", "Texts embedded.", [({}, m.embed_texts)])
    for name, values, help_ in (
        ("time_to_first_token_seconds", m.ttft_s, "Time to first token, recent requests."),
        ("decode_tokens_per_second", m.tokens_per_s, "Decode speed per request, recent requests."),
    ):
        if values:
            out.metric(
                name,
                "gauge",
                help_,
                [({"quantile": q}, quantile(values, q)) for q in (0.5, 0.9, 0.99)],
            )
    if m.token_gaps_s:
        out.metric(
            "token_gap_seconds",
            "gauge",
            "Longest wait between two tokens of a stream, recent streams.",
            [({"quantile": q}, quantile(m.token_gaps_s, q)) for q in (0.5, 0.9, 0.99)],
        )
    waiting: Counter[str] = Counter()
    for runner in status.runners:
        waiting.update(runner.waiting)
    out.metric(
        "queue_depth",
        "gauge",
        "Requests not started yet, by class; prompts part way through prefill as 'prefilling'.",
        [({"class": c}, waiting.get(c, 0)) for c in ("completion", "chat", "bulk")]
        + [({"class": "prefilling"}, sum(r.prefilling for r in status.runners))],
    )
    out.summary(
        "queue_wait_seconds",
        "Seconds from submission to the start of prefill (or of embedding), by class.",
        [({"class": c}, w.sum_s, w.count) for c, w in status.queue_wait_s.items()],
    )
    out.metric("running", "gauge", "Sequences in the decode batch.", [({}, status.running)])
    out.metric(
        "max_batch_seen", "gauge", "Largest decode batch so far.", [({}, status.max_batch_seen)]
    )
    memory = status.memory
    out.metric(
        "memory_bytes",
        "gauge",
        "MLX memory (active, peak) and the memory governor's budget and what it counts: "
        "models, kv, prompt_cache, used.",
        [
            ({"kind": "active"}, memory.active_bytes),
            ({"kind": "peak"}, memory.peak_bytes),
            ({"kind": "models"}, memory.models_bytes),
            ({"kind": "kv"}, memory.kv_bytes),
            ({"kind": "prompt_cache"}, memory.prompt_cache_bytes),
            ({"kind": "used"}, memory.used_bytes),
            ({"kind": "budget"}, memory.budget_bytes),
        ],
    )
    out.metric(
        "healthy",
        "gauge",
        "1 while the worker thread is alive and no step has passed watchdog_step_s.",
        [({}, int(status.healthy))],
    )
    out.metric(
        "model_loaded",
        "gauge",
        "Loaded models.",
        [({"model": m.id, "kind": m.kind}, 1) for m in status.loaded],
    )
    out.metric(
        "uptime_seconds", "gauge", "Seconds since the engine started.", [({}, status.uptime_s)]
    )
    usage_metrics(out, status.usage)
    return out.text()


def usage_metrics(out: Exposition, usage: list[ModelUsage]) -> None:
    """The usage ledger per model and upstream ("local" for the engine), across restarts."""
    labelled = [({"model": u.model, "upstream": u.upstream or "local"}, u) for u in usage]
    for name, field, help_ in (
        ("usage_requests_total", "requests", "Requests served, from the usage ledger."),
        ("usage_errors_total", "errors", "Requests that failed, from the usage ledger."),
        ("usage_prompt_tokens_total", "prompt_tokens", "Prompt tokens, from the usage ledger."),
        ("usage_completion_tokens_total", "completion_tokens", "Completion tokens, ledger."),
    ):
        out.metric(name, "counter", help_, [(lab, getattr(u, field)) for lab, u in labelled])
    out.summary(
        "usage_latency_seconds",
        "Request latency (submission to last token) per model, from the usage ledger.",
        [(lab, u.latency_sum_s, u.latency_count) for lab, u in labelled],
    )
    out.metric(
        "usage_cost_total",
        "counter",
        "Cost from the configured prices per million tokens (priced models only).",
        [(lab, u.cost) for lab, u in labelled if u.cost is not None],
    )

"""Optional OpenTelemetry spans, off by default (`tracing = "off" | "otlp" | "logfire"`).

The edges open a span per request (`span("POST /v1/chat/completions")`, `span("jsonrpc
mlx/chat")`); upstream routing opens its own under it; the engine adds `engine.generate` with
children `queue_wait`, `prefill` and `decode` (TTFT, tokens, model, upstream as attributes),
drawn afterwards from the sequence's own timestamps, so nothing runs on the MLX worker and no
context crosses threads. Prompt and reply text go into spans only when
`tracing_include_prompts = true`.

When tracing is off every call here returns at once and OpenTelemetry is never imported: the
engine has no hard dependency on it (`pip install 'mlx-sidecar[tracing]'` or `[logfire]`)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from sidecar.config import Settings

log = logging.getLogger(__name__)
NAME = "mlx-sidecar"
Attributes = Mapping[str, str | int | float | bool]
_PERF_TO_WALL_NS = time.time_ns() - time.perf_counter_ns()


class _State:
    tracer: Tracer | None = None
    include_prompts: bool = False
    provider: Any = None  # the SDK provider we made, to flush on shutdown


state = _State()


def enabled() -> bool:
    return state.tracer is not None


def include_prompts() -> bool:
    return state.tracer is not None and state.include_prompts


def use(provider: TracerProvider | None, include_prompts: bool = False) -> None:
    """Trace with `provider` (an SDK TracerProvider, e.g. with an in-memory exporter in
    tests); None turns tracing off."""
    if provider is None:
        state.tracer = None
        return
    state.tracer = provider.get_tracer(NAME)
    state.include_prompts = include_prompts


def configure(settings: Settings) -> None:
    """Set up the exporter the settings ask for; a missing package is one error line, and the
    sidecar runs untraced."""
    if settings.tracing == "off":
        use(None)
        return
    try:
        if settings.tracing == "logfire":
            import logfire  # type: ignore[import-not-found,unused-ignore]

            logfire.configure(service_name=NAME, send_to_logfire="if-token-present", console=False)
            from opentelemetry import trace

            provider = trace.get_tracer_provider()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider = TracerProvider(resource=Resource.create({"service.name": NAME}))
            exporter = OTLPSpanExporter(endpoint=settings.tracing_endpoint)  # None: OTEL_* env
            provider.add_span_processor(BatchSpanProcessor(exporter))
            state.provider = provider
    except ImportError as e:
        extra = "logfire" if settings.tracing == "logfire" else "tracing"
        log.error("tracing is off: %s (install it with: pip install 'mlx-sidecar[%s]')", e, extra)
        use(None)
        return
    use(provider, settings.tracing_include_prompts)


def shutdown() -> None:
    """Export what is buffered (the OTLP batch processor) before the process ends."""
    if state.provider is not None:
        with contextlib.suppress(Exception):
            state.provider.shutdown()
        state.provider = None
    state.tracer = None


@contextlib.contextmanager
def span(name: str, attributes: Attributes | None = None) -> Iterator[Span | None]:
    """A span that is the current one inside the block (children nest under it); None when
    tracing is off."""
    tracer = state.tracer
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def wall_ns(perf_s: float) -> int:
    """A `time.perf_counter()` reading as the epoch nanoseconds spans carry (one offset per
    process, so the phases of a request line up to the nanosecond)."""
    return _PERF_TO_WALL_NS + int(perf_s * 1e9)


def start(
    name: str, attributes: Attributes | None = None, start_s: float | None = None
) -> Span | None:
    """A span under the current one that is not made current, for code that cannot keep a
    context open across its awaits (the engine's async generator); end it with `finish`.
    `start_s`: when it began, as a `time.perf_counter()` reading (default now)."""
    tracer = state.tracer
    if tracer is None:
        return None
    begin = wall_ns(start_s) if start_s is not None else None
    return tracer.start_span(name, attributes=attributes, start_time=begin)


def set_attributes(target: Span | None, attributes: Mapping[str, Any]) -> None:
    if target is not None:
        target.set_attributes({k: v for k, v in attributes.items() if v is not None})


def finish(target: Span | None, error: str | None = None) -> None:
    if target is None:
        return
    if error:
        from opentelemetry.trace import Status, StatusCode

        target.set_status(Status(StatusCode.ERROR, error))
    target.end()


def child(
    parent: Span | None,
    name: str,
    start_s: float,
    end_s: float,
    attributes: Attributes | None = None,
) -> None:
    """A finished child of `parent` from `time.perf_counter()` readings taken elsewhere (the
    worker thread's timestamps)."""
    tracer = state.tracer
    if parent is None or tracer is None:
        return
    from opentelemetry import trace

    begin = wall_ns(start_s)
    end = max(begin, wall_ns(end_s))
    context = trace.set_span_in_context(parent)
    tracer.start_span(name, context=context, start_time=begin, attributes=attributes or {}).end(end)

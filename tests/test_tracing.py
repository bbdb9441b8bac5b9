"""OpenTelemetry spans from each edge through the engine, read back with the SDK's in-memory
exporter: the HTTP route's span holds `engine.generate`, which holds `queue_wait`, `prefill` and
`decode`; model, tokens and TTFT are attributes; prompt text only when turned on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sidecar import tracing
from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.http.server import HttpServer, serve_http
from sidecar.lsp.server import build_server
from sidecar.models.defaults import EMBEDDING_MODEL
from tests.tiny_models import tiny_fim_model

PROMPT = "def secret_function_name(a, b):"


@pytest.fixture(scope="module")
def tiny(models_dir: Path) -> str:
    return tiny_fim_model(models_dir, "starcoder")


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.use(provider)
    yield memory
    tracing.use(None)


@pytest.fixture(scope="module")
async def served(settings: Settings) -> AsyncIterator[HttpServer]:
    async with Engine(settings) as engine:
        server = await serve_http(engine, "127.0.0.1", 0)
        yield server
        await server.stop()


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


async def complete(server: HttpServer, model: str) -> dict:
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
        reply = await client.post(
            "/v1/completions", json={"model": model, "prompt": PROMPT, "max_tokens": 4}
        )
    assert reply.status_code == 200, reply.text
    return reply.json()


async def test_http_request_spans_nest_through_the_engine(
    served: HttpServer, tiny: str, exporter: InMemorySpanExporter
) -> None:
    body = await complete(served, tiny)
    spans = exporter.get_finished_spans()
    edge = by_name(spans, "POST /v1/completions")
    generate = by_name(spans, "engine.generate")
    assert generate.parent is not None and generate.parent.span_id == edge.context.span_id
    assert edge.attributes is not None and edge.attributes["http.response.status_code"] == 200
    attrs: dict[str, Any] = dict(generate.attributes or {})
    assert attrs["mlx_sidecar.model"] == tiny and attrs["mlx_sidecar.upstream"] == "local"
    assert attrs["gen_ai.usage.input_tokens"] == body["usage"]["prompt_tokens"]
    assert attrs["gen_ai.usage.output_tokens"] == body["usage"]["completion_tokens"]
    assert attrs["mlx_sidecar.ttft_s"] > 0
    assert attrs["mlx_sidecar.finish_reason"] in ("stop", "length")
    phases = [by_name(spans, n) for n in ("queue_wait", "prefill", "decode")]
    for phase in phases:
        assert phase.parent is not None and phase.parent.span_id == generate.context.span_id
    assert phases[0].end_time <= phases[1].start_time + 1  # type: ignore[operator]
    assert phases[1].end_time <= phases[2].start_time + 1  # type: ignore[operator]
    assert generate.start_time <= phases[0].start_time  # type: ignore[operator]
    text = repr([dict(s.attributes or {}) for s in spans])
    assert "secret_function_name" not in text  # no prompt text unless turned on
    assert "mlx_sidecar.completion" not in text


async def test_prompt_text_only_when_turned_on(
    served: HttpServer, tiny: str, exporter: InMemorySpanExporter
) -> None:
    tracing.state.include_prompts = True
    body = await complete(served, tiny)
    generate = by_name(exporter.get_finished_spans(), "engine.generate")
    attrs = dict(generate.attributes or {})
    assert "secret_function_name" in str(attrs["mlx_sidecar.prompt"])
    assert attrs["mlx_sidecar.completion"] == body["choices"][0]["text"]


async def test_json_rpc_handler_span_holds_the_engine_span(
    served: HttpServer, exporter: InMemorySpanExporter
) -> None:
    server = build_server(served.engine, served.engine.settings)
    handler = server.protocol.fm.features["mlx/embed"]
    result = await handler({"input": ["secret_function_name"], "model": EMBEDDING_MODEL})
    assert len(result.data) == 1
    spans = exporter.get_finished_spans()
    edge = by_name(spans, "jsonrpc mlx/embed")
    embed = by_name(spans, "engine.embed")
    assert embed.parent is not None and embed.parent.span_id == edge.context.span_id
    embed_attrs: dict[str, Any] = dict(embed.attributes or {})
    assert embed_attrs["gen_ai.usage.input_tokens"] > 0
    assert "secret_function_name" not in repr([dict(s.attributes or {}) for s in spans])


def test_tracing_off_by_default_costs_nothing() -> None:
    assert Settings().tracing == "off"
    tracing.configure(Settings())
    assert not tracing.enabled()
    with tracing.span("x") as span:
        assert span is None

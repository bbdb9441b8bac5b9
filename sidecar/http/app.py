"""The OpenAI-compatible HTTP API on the shared engine. Routes validate, call the engine, format."""

from __future__ import annotations

import asyncio
import base64
import functools
from collections import Counter
from collections.abc import Iterable
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import PlainTextResponse

from sidecar.completion.fim import build_fim_prompt, fim_stop_tokens
from sidecar.completion.healing import healed_events
from sidecar.completion.prompt import heal
from sidecar.engine.chat import TurnInput
from sidecar.engine.engine import Engine
from sidecar.engine.requests import GenerateRequest, Priority
from sidecar.engine.response_format import constraint_of
from sidecar.errors import EngineError
from sidecar.http import dialects, errors, metrics
from sidecar.http.errors import JSON, OpenAIError
from sidecar.http.openapi import install as install_openapi
from sidecar.http.openapi import request_body
from sidecar.http.relay import relay, relay_json, route, router_of
from sidecar.http.responses import ChatFormat, CompletionFormat, respond, until_disconnected
from sidecar.http.schemas import ChatRequest, CompletionRequest, EmbeddingRequest
from sidecar.http.security import MAX_BODY_BYTES, Guard, allowed_host_names
from sidecar.http.timeouts import BODY_TIMEOUT_S, BodyDeadline, abandoned
from sidecar.http.turns import chat_turn, default_model, engine_of, json_body
from sidecar.models.listing import local_models
from sidecar.models.pool import LoadedModel
from sidecar.roles import Roles
from sidecar.upstreams.router import Router
from sidecar.wire import Usage


async def model_list(engine: Engine, router: Router) -> list[dict[str, Any]]:
    # Local file paths are the editor's business, not a network client's.
    local = [m.model_dump(exclude={"path"}) for m in await local_models(engine)]
    return local + [m.model_dump() for m in await router.models()]


async def named_model(engine: Engine, model: str | None, default: str) -> LoadedModel:
    try:
        return await engine.load(model or default)
    except Exception as e:
        raise errors.from_exception(e, param="model") from e


def fim_prompt(
    loaded: LoadedModel, prefix: str, suffix: str, healing: bool
) -> tuple[str, list[str], str]:
    """The fill-in-the-middle prompt for the model's FIM family, the markers that end it, and
    (`healing`) the text cut off the prefix that the answer must start with (see
    `sidecar.completion.healing`)."""
    family = loaded.info.fim
    if family is None:
        raise OpenAIError(
            400,
            f"model {loaded.id!r} has no fill-in-the-middle tokens, so it cannot use 'suffix'; "
            "use a code model with FIM tokens (e.g. Qwen2.5-Coder, StarCoder2, DeepSeek-Coder)",
            param="suffix",
            code="fim_not_supported",
        )
    head, healed = heal(prefix) if healing else (prefix, "")
    return build_fim_prompt(family, head, suffix), fim_stop_tokens(family), healed


def add_routes(app: FastAPI) -> None:
    @app.get("/v1/models")
    async def list_models(request: Request) -> JSON:
        models = await model_list(engine_of(request), router_of(request))
        body: dict[str, Any] = {"object": "list", "data": models}
        if failed := router_of(request).listing_errors():  # reported, never breaking the list
            body["upstream_errors"] = failed
        return JSON(body)

    @app.get("/v1/models/{model_id:path}")
    async def get_model(request: Request, model_id: str) -> JSON:
        engine = engine_of(request)
        if router_of(request).named(model_id) is None:
            try:
                model_id = await asyncio.to_thread(engine.store.resolve_id, model_id)
            except Exception as e:
                raise errors.from_exception(e) from e
        found = [m for m in await model_list(engine, router_of(request)) if m["id"] == model_id]
        if not found:
            raise OpenAIError(
                404, f"model {model_id!r} not found", param="model", code="model_not_found"
            )
        return JSON(found[0])

    @app.post("/v1/chat/completions", response_model=None, openapi_extra=request_body(ChatRequest))
    async def chat_completions(
        request: Request, body: Annotated[ChatRequest, Depends(json_body(ChatRequest))]
    ) -> Any:
        engine = engine_of(request)
        try:
            messages = [m.to_template() for m in body.messages]
        except Exception as e:
            raise errors.from_exception(e, param="messages") from e
        max_tokens = body.max_completion_tokens or body.max_tokens
        default = default_model(request, "chat")
        what = TurnInput(messages, body.tool_request(), body.response_format)
        remote = await route(
            request,
            "chat",
            body.model,
            default,
            prompt_tokens=what.prompt_tokens,
            max_tokens=max_tokens,
        )
        if remote is not None:
            return await relay(request, remote, "chat", body.stream, body.include_usage)
        turn = await chat_turn(
            engine,
            what,
            body.model or default,
            max_tokens=max_tokens,  # None: the default
            logprobs=body.engine_logprobs(),
            **body.sampling(),
        )
        req = turn.request
        events = turn.events(engine, body.reasoning_format == "inline")
        fmt = ChatFormat(turn.plan.model, body.include_usage)
        return await respond(
            request, engine, req, fmt, body.stream, "messages", body.logprobs, events
        )

    @app.post("/v1/completions", response_model=None, openapi_extra=request_body(CompletionRequest))
    async def completions(
        request: Request, body: Annotated[CompletionRequest, Depends(json_body(CompletionRequest))]
    ) -> Any:
        engine = engine_of(request)
        prompts = body.prompts()
        if len(prompts) != 1:
            raise OpenAIError(400, "send one prompt per request", param="prompt")
        if body.echo and body.logprobs is not None:
            raise OpenAIError(400, "echo with logprobs is not supported", param="echo")
        default = default_model(request, "completion")
        prompt = prompts[0]
        if not isinstance(prompt, list) or router_of(request).named(body.model):
            measured = prompt if isinstance(prompt, str) else None  # token ids: not measured
            remote = await route(
                request,
                "completion",
                body.model,
                default,
                text=measured,
                max_tokens=body.max_tokens,
            )
            if remote is not None:
                return await relay(request, remote, "completion", body.stream, body.include_usage)
        loaded = await named_model(engine, body.model, default)
        if isinstance(prompt, list):  # before decoding: an id past the vocabulary crashes MLX
            try:
                loaded.check_token_ids(prompt)
            except EngineError as e:
                raise OpenAIError(400, str(e), param="prompt", code="invalid_token_id") from e
        text = prompt if isinstance(prompt, str) else loaded.tokenizer.decode(prompt)
        sampling, priority, healed = body.sampling(), Priority.CHAT, ""
        if body.suffix is not None:
            healing = body.logprobs is None and not body.echo  # the cut text is written again
            prompt, fim_stops, healed = fim_prompt(loaded, text, body.suffix, healing)
            sampling["stop"] += fim_stops
            priority = Priority.COMPLETION  # editor autocomplete: ahead of chat in the batch
        req = GenerateRequest(
            prompt=prompt,
            model=loaded.id,
            max_tokens=body.max_tokens or 16,
            logprobs=body.logprobs,
            priority=priority,
            constraint=constraint_of(body.response_format),
            endpoint="completion",
            **sampling,
        )
        fmt = CompletionFormat(loaded.id, body.include_usage, text if body.echo else None)
        wants_logprobs = body.logprobs is not None
        events = None
        if healed:
            cancel = functools.partial(engine.cancel, req.request_id)
            events = healed_events(engine.generate(req), healed, cancel)
        return await respond(
            request, engine, req, fmt, body.stream, "prompt", wants_logprobs, events
        )

    @app.post("/v1/embeddings", openapi_extra=request_body(EmbeddingRequest))
    async def embeddings(
        request: Request, body: Annotated[EmbeddingRequest, Depends(json_body(EmbeddingRequest))]
    ) -> JSON:
        engine = engine_of(request)
        remote = await route(request, "embedding", body.model, default_model(request, "embedding"))
        if remote is not None:
            return await relay_json(request, remote, "embedding")
        try:
            result = await until_disconnected(
                request,
                engine.embed(body.texts(), body.model or default_model(request, "embedding")),
            )
        except OpenAIError:
            raise
        except Exception as e:
            raise errors.from_exception(e, param="input") from e
        vectors = np.asarray(result.vectors, dtype=np.float32)
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode()
                if body.encoding_format == "base64"
                else v.tolist(),
            }
            for i, v in enumerate(vectors)
        ]
        return JSON(
            {
                "object": "list",
                "data": data,
                "model": result.model,
                "usage": Usage.of(result.prompt_tokens).model_dump(),
            }
        )

    dialects.add_routes(app)  # /v1/responses, /v1/messages

    @app.get("/health")
    async def health(request: Request) -> JSON:
        """200 `status: "ok"`; 503 `status: "unhealthy"` with `health_reason` when the worker
        thread died or a step has hung (the worker watchdog)."""
        status = engine_of(request).status()
        body = {"status": "ok" if status.healthy else "unhealthy", **status.model_dump()}
        return JSON(body, status_code=200 if status.healthy else 503)

    @app.get("/metrics")
    async def prometheus(request: Request) -> PlainTextResponse:
        text = metrics.render(engine_of(request), request.app.state.http_counts)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


def create_app(
    engine: Engine,
    *,
    bind_host: str = "127.0.0.1",
    api_key: str | None = None,
    allowed_hosts: Iterable[str] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
    cors_origins: Iterable[str] = (),
    body_timeout_s: float = BODY_TIMEOUT_S,
    roles: Roles | None = None,
    router: Router | None = None,
) -> FastAPI:
    """The app for `engine`. Requests must carry a Host of the bound host or localhost (unless
    bound to a wildcard address), no foreign Origin, the bearer key when one is set, and
    bodies under the limit that arrive within `body_timeout_s`. `roles` (shared with the editor's
    server in `stdio --http-port`) names the models for requests that name none."""
    app = FastAPI(
        title="mlx-sidecar OpenAI-compatible API",
        default_response_class=JSON,
        docs_url=None,
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.roles = roles if roles is not None else Roles.from_settings(engine.settings)
    # Shared with the editor's server in `stdio --http-port`; one without upstreams otherwise.
    app.state.router = (
        router if router is not None else Router(engine, engine.settings, usage=engine.record_usage)
    )
    origins = list(cors_origins)
    app.state.http_counts = Counter()
    app.state.generating = set()  # engine request ids of HTTP requests in flight
    errors.install(app)
    app.add_exception_handler(ClientDisconnect, abandoned)
    add_routes(app)
    install_openapi(app)
    app.add_middleware(BodyDeadline, timeout_s=body_timeout_s)
    app.add_middleware(
        Guard,
        api_key=api_key,
        allowed_hosts=allowed_host_names(bind_host, allowed_hosts),
        max_body_bytes=max_body_bytes,
        cors_origins=origins,
    )
    app.add_middleware(metrics.RequestCounter, counts=app.state.http_counts)
    app.add_middleware(metrics.Traced)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "x-api-key", "anthropic-version"],
        )
    return app

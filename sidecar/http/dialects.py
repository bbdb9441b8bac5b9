"""The routes of the port's other API dialects, OpenAI's Responses (`/v1/responses`) and
Anthropic's Messages (`/v1/messages`, `/v1/messages/count_tokens`): each maps its request to
the engine's one chat turn and its reply back (sidecar/http/responses_*.py, messages_*.py).
Models on an upstream (`UPSTREAM/MODEL`) are Chat Completions only: these answer a clear 400."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from sidecar.engine.chat import TurnInput
from sidecar.http.errors import JSON, OpenAIError
from sidecar.http.messages_api import CountTokensRequest, MessagesRequest
from sidecar.http.messages_api import chat_messages as anthropic_messages
from sidecar.http.messages_output import MessageWriter
from sidecar.http.openapi import request_body
from sidecar.http.relay import router_of
from sidecar.http.responses_api import ResponsesRequest
from sidecar.http.responses_api import chat_messages as responses_messages
from sidecar.http.responses_output import ResponseStore, ResponseWriter
from sidecar.http.turns import answer, chat_turn, default_model, engine_of, json_body


def local_model(request: Request, model: str | None, api: str) -> str:
    """The model a dialect request runs on: the named one or the chat role's, never remote."""
    chosen = model or default_model(request, "chat")
    remote = router_of(request).named(chosen)
    if remote is not None:
        raise OpenAIError(
            400,
            f"the {api} is not supported for upstream models ({chosen!r} is on upstream "
            f"{remote.name!r}); use /v1/chat/completions for it, or a local model here",
            param="model",
            code="upstream_not_supported",
        )
    return chosen


def store_of(request: Request) -> ResponseStore:
    return request.app.state.responses


def add_routes(app: FastAPI) -> None:
    app.state.responses = ResponseStore()

    @app.post("/v1/responses", response_model=None, openapi_extra=request_body(ResponsesRequest))
    async def responses(
        request: Request, body: Annotated[ResponsesRequest, Depends(json_body(ResponsesRequest))]
    ) -> Any:
        engine = engine_of(request)
        model = local_model(request, body.model, "Responses API")
        limits = engine.settings.limits
        earlier = []
        if body.previous_response_id is not None:
            earlier = store_of(request).get(body.previous_response_id).conversation
        conversation = [*earlier, *responses_messages(body, limits)]
        system = [{"role": "system", "content": body.instructions}] if body.instructions else []
        what = TurnInput(system + conversation, body.tool_request(), body.response_format())
        turn = await chat_turn(engine, what, model, "input", **body.sampling())
        writer = ResponseWriter(body, turn.plan.model, conversation, store_of(request))
        return await answer(request, engine, turn, writer, body.stream, "input")

    @app.get("/v1/responses/{response_id}")
    async def get_response(request: Request, response_id: str) -> JSON:
        return JSON(store_of(request).get(response_id, param="response_id").body)

    @app.delete("/v1/responses/{response_id}")
    async def delete_response(request: Request, response_id: str) -> JSON:
        store_of(request).pop(response_id)
        return JSON({"id": response_id, "object": "response.deleted", "deleted": True})

    @app.post(
        "/v1/messages",
        response_model=None,
        openapi_extra=request_body(MessagesRequest, "AnthropicError"),
    )
    async def messages(
        request: Request, body: Annotated[MessagesRequest, Depends(json_body(MessagesRequest))]
    ) -> Any:
        engine = engine_of(request)
        model = local_model(request, body.model, "Messages API")
        what = TurnInput(anthropic_messages(body, engine.settings.limits), body.tool_request())
        turn = await chat_turn(engine, what, model, **body.sampling())
        writer = MessageWriter(turn.plan.model, body.thinks)
        return await answer(request, engine, turn, writer, body.stream, "messages")

    @app.post(
        "/v1/messages/count_tokens",
        openapi_extra=request_body(CountTokensRequest, "AnthropicError"),
    )
    async def count_tokens(
        request: Request,
        body: Annotated[CountTokensRequest, Depends(json_body(CountTokensRequest))],
    ) -> JSON:
        """The prompt tokens the turn would have (a vision model's images not counted)."""
        engine = engine_of(request)
        model = local_model(request, body.model, "Messages API")
        messages = anthropic_messages(body, engine.settings.limits)
        turn = await chat_turn(engine, TurnInput(messages, body.tool_request()), model)
        prompt = turn.request.prompt
        count = (
            len(prompt)
            if isinstance(prompt, list)
            else len(await engine.tokenize(prompt, turn.plan.model))
        )
        return JSON({"input_tokens": count})

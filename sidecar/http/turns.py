"""One chat turn answered in an API dialect of its own (Responses, Messages): each dialect is a
`TurnWriter` that shapes the engine's one chat turn (`sidecar.engine.chat.start_turn`) as its
JSON body or its named SSE events; this module runs the turn the same way for all of them.

As for Chat Completions (`sidecar/http/responses.py`): the first event is awaited before any
header goes out, so errors found up front are proper HTTP errors in the dialect's shape; a
client that leaves cancels the engine request; the request id stays in `app.state.generating`
while it runs, so that stopping the server can cancel it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Protocol, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from sidecar.engine.chat import ChatReply, ReplyDelta, Turn, TurnInput, start_turn
from sidecar.engine.engine import Engine
from sidecar.http.errors import JSON, OpenAIError, from_exception, from_validation
from sidecar.http.responses import EventStream, failed, serve_events

SSE = tuple[str, dict[str, Any]]  # an event's name and data
M = TypeVar("M", bound=BaseModel)


def json_body(model: type[M]) -> Callable[[Request], Coroutine[Any, Any, M]]:
    """Parse the body with orjson whatever its Content-Type (curl -d sends form type)."""

    async def parse(request: Request) -> M:
        raw = await request.body()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise OpenAIError(400, f"malformed JSON body: {e}", code="invalid_json") from e
        if not isinstance(data, dict):
            raise OpenAIError(400, "the body must be a JSON object")
        try:
            return model.model_validate(data, context=engine_of(request).settings.limits)
        except ValidationError as e:
            raise from_validation(e.errors()) from e

    return parse


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def default_model(request: Request, role: str) -> str:
    """The model a request that names none gets: the role's current model (see sidecar/roles)."""
    return request.app.state.roles[role]


async def chat_turn(
    engine: Engine, what: TurnInput, model: str, param: str = "messages", **request: Any
) -> Turn:
    """The engine's one chat turn, its errors as HTTP (a model's errors name `model`, the rest
    `param`). Every dialect of this port starts its turns here."""
    try:
        return await start_turn(engine, what, model, **request)
    except Exception as e:
        raise from_exception(e, param=param) from e


class TurnWriter(Protocol):
    def opening(self, turn: Turn) -> list[SSE]: ...

    def delta(self, event: ReplyDelta) -> list[SSE]: ...

    def closing(self, reply: ChatReply) -> list[SSE]: ...

    def error(self, error: OpenAIError) -> list[SSE]: ...

    def whole(self, reply: ChatReply) -> dict[str, Any]: ...


def named_sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def answer(
    request: Request,
    engine: Engine,
    turn: Turn,
    writer: TurnWriter,
    stream: bool,
    prompt_param: str,
) -> JSON | EventStream:
    """Run `turn` and answer it as the writer's JSON body or its SSE stream."""
    events = turn.events(engine)
    out = await serve_events(
        request,
        turn.request.request_id,
        events,
        prompt_param,
        (lambda first: stream_body(writer, turn, first, events)) if stream else None,
        lambda first: last(first, events),
    )
    if isinstance(out, EventStream):
        return out
    error = failed(out)
    if error is not None:
        raise error
    return JSON(writer.whole(out))


async def last(
    first: ReplyDelta | ChatReply, events: AsyncIterator[ReplyDelta | ChatReply]
) -> ChatReply:
    event = first
    while not isinstance(event, ChatReply):
        event = await anext(events)
    return event


async def stream_body(
    writer: TurnWriter,
    turn: Turn,
    first: ReplyDelta | ChatReply,
    events: AsyncIterator[ReplyDelta | ChatReply],
) -> AsyncIterator[bytes]:
    for sse in writer.opening(turn):
        yield named_sse(*sse)
    event = first
    while isinstance(event, ReplyDelta):
        for sse in writer.delta(event):
            yield named_sse(*sse)
        event = await anext(events)
    error = failed(event)
    for sse in writer.error(error) if error is not None else writer.closing(event):
        yield named_sse(*sse)

"""Engine events -> OpenAI response bodies and SSE streams, for chat and text completions.

A request's first event is awaited before any header is sent, so errors the engine raises up
front (unknown model, prompt over the context) become proper HTTP errors, not a broken stream.
A client that goes away cancels its engine request, during the wait and during the stream.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from sidecar.engine.chat import ChatReply, ReplyDelta
from sidecar.engine.engine import Engine
from sidecar.engine.requests import Delta, GenerateRequest, Result, TokenLogprob
from sidecar.errors import result_error
from sidecar.http.errors import JSON, OpenAIError, from_exception
from sidecar.wire import Usage

T = TypeVar("T")
Event = Delta | Result
DONE = b"data: [DONE]\n\n"


class ClientGone(OpenAIError):
    def __init__(self) -> None:
        super().__init__(499, "client closed the request")


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and raising ClientGone) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_wait_disconnect(request.receive))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled():
        raise ClientGone()
    return task.result()


def usage(result: Result) -> dict[str, int]:
    return Usage.of(result.prompt_tokens, result.completion_tokens).model_dump()


def failed(result: Result) -> OpenAIError | None:
    if (error := result_error(result)) is not None:
        return from_exception(error)
    # Only a stopping server cancels here: a client that leaves gets ClientGone instead.
    if result.finish_reason == "cancelled":
        return OpenAIError(503, "the request was cancelled: the server is stopping")
    return None


class Format:
    """Shapes one request's events as OpenAI objects; subclasses for chat and completions."""

    object_name = ""
    chunk_object = ""

    def __init__(self, model: str, include_usage: bool, id_prefix: str) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = f"{id_prefix}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    def envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }

    def chunk(self, choice: dict[str, Any]) -> dict[str, Any]:
        body = self.envelope(self.chunk_object, [{"index": 0, **choice}])
        if self.include_usage:
            body["usage"] = None
        return body

    def usage_chunk(self, result: Result) -> dict[str, Any]:
        return {**self.envelope(self.chunk_object, []), "usage": usage(result)}

    # Overridden per API:
    def opening(self) -> list[dict[str, Any]]:
        return []

    def delta(self, event: Delta) -> dict[str, Any]:
        raise NotImplementedError

    def deltas(self, event: Delta) -> list[dict[str, Any]]:
        """The chunks one event streams as (chat: tool calls take two)."""
        return [self.delta(event)]

    def closing(self, result: Result) -> dict[str, Any]:
        raise NotImplementedError

    def whole(self, result: Result, logprobs: list[TokenLogprob] | None) -> dict[str, Any]:
        raise NotImplementedError


class ChatFormat(Format):
    chunk_object = "chat.completion.chunk"

    def __init__(self, model: str, include_usage: bool) -> None:
        super().__init__(model, include_usage, "chatcmpl")

    def opening(self) -> list[dict[str, Any]]:
        return [
            self.chunk(
                {
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            )
        ]

    def choice_delta(self, delta: dict[str, Any], logprobs: Any = None) -> dict[str, Any]:
        return self.chunk({"delta": delta, "logprobs": logprobs, "finish_reason": None})

    def delta(self, event: Delta) -> dict[str, Any]:
        return self.choice_delta({"content": event.text}, chat_logprobs(event.logprobs))

    def deltas(self, event: Delta) -> list[dict[str, Any]]:
        """Reasoning, content, then each tool call as OpenAI streams one: a chunk that opens it
        (index, id, name, no arguments yet), then its arguments."""
        if not isinstance(event, ReplyDelta):
            return [self.delta(event)]
        out = []
        if event.reasoning:
            out.append(self.choice_delta({"reasoning_content": event.reasoning}))
        if event.text or event.logprobs or not (event.reasoning or event.tool_calls):
            out.append(self.delta(event))
        for call in event.tool_calls:
            opening = {
                "index": call.index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            out.append(self.choice_delta({"tool_calls": [opening]}))
            arguments = {"index": call.index, "function": {"arguments": call.arguments}}
            out.append(self.choice_delta({"tool_calls": [arguments]}))
        return out

    def closing(self, result: Result) -> dict[str, Any]:
        return self.chunk({"delta": {}, "logprobs": None, "finish_reason": result.finish_reason})

    def whole(self, result: Result, logprobs: list[TokenLogprob] | None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": result.text, "refusal": None}
        if isinstance(result, ChatReply):
            if result.reasoning is not None:
                message["reasoning_content"] = result.reasoning
            if result.tool_calls:
                message["tool_calls"] = [c.to_openai() for c in result.tool_calls]
                message["content"] = result.text or None
        choice = {
            "index": 0,
            "message": message,
            "logprobs": chat_logprobs(logprobs),
            "finish_reason": result.finish_reason,
        }
        return {**self.envelope("chat.completion", [choice]), "usage": usage(result)}


class CompletionFormat(Format):
    chunk_object = "text_completion"

    def __init__(self, model: str, include_usage: bool, echo: str | None) -> None:
        super().__init__(model, include_usage, "cmpl")
        self.echo = echo
        self.offset = len(echo or "")

    def opening(self) -> list[dict[str, Any]]:
        if not self.echo:
            return []
        return [self.chunk({"text": self.echo, "logprobs": None, "finish_reason": None})]

    def logprobs(self, items: list[TokenLogprob] | None) -> dict[str, Any] | None:
        if items is None:
            return None
        offsets = []
        for item in items:
            offsets.append(self.offset)
            self.offset += len(item.token)
        return {
            "tokens": [i.token for i in items],
            "token_logprobs": [i.logprob for i in items],
            "top_logprobs": [dict(i.top) for i in items],
            "text_offset": offsets,
        }

    def delta(self, event: Delta) -> dict[str, Any]:
        return self.chunk(
            {"text": event.text, "logprobs": self.logprobs(event.logprobs), "finish_reason": None}
        )

    def closing(self, result: Result) -> dict[str, Any]:
        return self.chunk({"text": "", "logprobs": None, "finish_reason": result.finish_reason})

    def whole(self, result: Result, logprobs: list[TokenLogprob] | None) -> dict[str, Any]:
        choice = {
            "index": 0,
            "text": (self.echo or "") + result.text,
            "logprobs": self.logprobs(logprobs),
            "finish_reason": result.finish_reason,
        }
        return {**self.envelope("text_completion", [choice]), "usage": usage(result)}


def chat_logprobs(items: list[TokenLogprob] | None) -> dict[str, Any] | None:
    if items is None:
        return None
    return {
        "content": [
            {
                "token": i.token,
                "logprob": i.logprob,
                "bytes": list(i.token.encode()),
                "top_logprobs": [
                    {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in i.top
                ],
            }
            for i in items
        ],
        "refusal": None,
    }


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class EventStream(StreamingResponse):
    """SSE response that closes the engine request however the response ends (client gone
    included: Starlette cancels the body iteration when the client disconnects)."""

    def __init__(
        self, body: AsyncIterator[bytes], events: AsyncIterator[Any], on_close: Callable[[], None]
    ) -> None:
        super().__init__(
            body,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.events = events
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
            await self.events.aclose()  # type: ignore[attr-defined]
            self.on_close()


async def stream_body(
    fmt: Format, first: Event, events: AsyncIterator[Event]
) -> AsyncIterator[bytes]:
    for chunk in fmt.opening():
        yield sse(chunk)
    event = first
    while isinstance(event, Delta):
        for chunk in fmt.deltas(event):
            yield sse(chunk)
        event = await anext(events)
    error = failed(event)
    if error is not None:
        yield sse(error.body())
    else:
        yield sse(fmt.closing(event))
        if fmt.include_usage:
            yield sse(fmt.usage_chunk(event))
    yield DONE


async def collect(
    first: Event, events: AsyncIterator[Event]
) -> tuple[Result, list[TokenLogprob] | None]:
    logprobs: list[TokenLogprob] | None = None
    event = first
    while isinstance(event, Delta):
        if event.logprobs is not None:
            logprobs = [*(logprobs or []), *event.logprobs]
        event = await anext(events)
    return event, logprobs


E = TypeVar("E")
W = TypeVar("W")


async def serve_events(
    request: Request,
    request_id: str,
    events: AsyncIterator[E],
    prompt_param: str,
    stream: Callable[[E], AsyncIterator[bytes]] | None,
    rest: Callable[[E], Awaitable[W]],
) -> EventStream | W:
    """Wait for a request's first event (an error before it is the request's 4xx/5xx), then
    hand the events to an SSE response (`stream`), or read the `rest` of them while the client
    stays connected. The request id stays in `app.state.generating` while it runs, so that
    stopping the server can cancel it; the events are closed whichever way it ends."""
    generating: set[str] = request.app.state.generating
    generating.add(request_id)
    handed_over = False  # to the streaming response, which closes the events itself

    def done() -> None:
        generating.discard(request_id)

    try:
        try:
            first = await until_disconnected(request, anext(events))
        except ClientGone:
            raise
        except Exception as e:
            raise from_exception(e, param=prompt_param) from e
        if stream is not None:
            response = EventStream(stream(first), events, done)
            handed_over = True
            return response
        return await until_disconnected(request, rest(first))
    finally:
        if not handed_over:
            await events.aclose()  # type: ignore[attr-defined]
            done()


async def respond(
    request: Request,
    engine: Engine,
    req: GenerateRequest,
    fmt: Format,
    stream: bool,
    prompt_param: str,
    wants_logprobs: bool = False,
    events: AsyncIterator[Event] | None = None,
) -> JSON | EventStream:
    """Run one engine request and answer it as JSON or as an SSE stream.
    `events`: the request's events already wrapped (a chat reply split by chat_stream)."""
    source = events if events is not None else engine.generate(req)
    out = await serve_events(
        request,
        req.request_id,
        source,
        prompt_param,
        (lambda first: stream_body(fmt, first, source)) if stream else None,
        lambda first: collect(first, source),
    )
    if isinstance(out, EventStream):
        return out
    result, logprobs = out
    error = failed(result)
    if error is not None:
        raise error
    if wants_logprobs and logprobs is None:
        logprobs = []
    return JSON(fmt.whole(result, logprobs))

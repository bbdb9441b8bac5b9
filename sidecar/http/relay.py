"""Requests the router sends to an upstream, answered on the OpenAI port: the upstream's JSON,
or its SSE stream relayed event by event as it comes, with `x_served_by` in each body and the
`x-mlx-upstream` header (plus `x-mlx-fallback: REASON` when a local request fell back). A client
that leaves closes the upstream request (the stream's iterator closes its httpx response)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request

from sidecar.http.errors import JSON, OpenAIError, from_exception
from sidecar.http.responses import DONE, ClientGone, EventStream, sse, until_disconnected
from sidecar.upstreams.router import Remote, Router
from sidecar.usage.events import Endpoint


def router_of(request: Request) -> Router:
    return request.app.state.router


async def route(
    request: Request,
    role: Endpoint,
    model: str | None,
    default: str,
    **prompt: Any,
) -> Remote | None:
    """The router's decision for this request (None: the local engine), its errors as HTTP."""
    try:
        return await router_of(request).route(role, model, default, **prompt)
    except Exception as e:
        raise from_exception(e, param="model") from e


def headers_for(remote: Remote) -> dict[str, str]:
    headers = {"x-mlx-upstream": remote.name}
    if remote.reason != "requested":
        headers["x-mlx-fallback"] = remote.reason
    return headers


async def raw_body(request: Request) -> dict[str, Any]:
    data = orjson.loads(await request.body())  # already parsed once: valid JSON object
    assert isinstance(data, dict)
    return data


async def relay_json(request: Request, remote: Remote, endpoint: Endpoint) -> JSON:
    body = await raw_body(request)
    try:
        reply = await until_disconnected(request, router_of(request).call(remote, endpoint, body))
    except ClientGone:
        raise
    except Exception as e:
        raise from_exception(e) from e
    reply["x_served_by"] = remote.name
    return JSON(reply, headers=headers_for(remote))


async def relay(
    request: Request, remote: Remote, endpoint: Endpoint, stream: bool, include_usage: bool
) -> JSON | EventStream:
    if not stream:
        return await relay_json(request, remote, endpoint)
    router = router_of(request)
    body = await raw_body(request)
    events = router.stream(remote, endpoint, body, include_usage)
    try:
        first = await until_disconnected(request, anext(events, None))
    except BaseException as e:
        await events.aclose()  # type: ignore[attr-defined]
        if isinstance(e, ClientGone | OpenAIError) or not isinstance(e, Exception):
            raise
        raise from_exception(e) from e
    response = EventStream(relayed(remote, first, events), events, lambda: None)
    response.headers.update(headers_for(remote))
    return response


async def relayed(
    remote: Remote, first: dict[str, Any] | None, events: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[bytes]:
    if first is not None:
        yield sse({**first, "x_served_by": remote.name})
        try:
            async for event in events:
                yield sse({**event, "x_served_by": remote.name})
        except Exception as e:  # the stream broke after its headers went out: say so in it
            yield sse(from_exception(e).body())
    yield DONE

"""`mlx/upstreams/list|add|setKey`, and `mlx/chat` / `mlx/embed` when the router sends them to
an upstream. The editor declares endpoints with `add` (`{name, baseUrl}`) and hands over keys
from its SecretStorage with `setKey` (`{upstream, key}`; kept in this process's memory only,
never logged, never in a reply)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError
from pygls.exceptions import JsonRpcInvalidParams

from sidecar.engine.content import to_template
from sidecar.errors import UpstreamError
from sidecar.lsp import notify
from sidecar.lsp.errors import Params, parse, rpc_errors
from sidecar.lsp.session import SidecarServer
from sidecar.upstreams.router import Remote, content_of
from sidecar.upstreams.settings import NAME, UpstreamSettings
from sidecar.wire import ChatResult, EmbedResult, UpstreamsResult, Usage


class AddParams(Params):
    name: str = Field(min_length=1, max_length=64, pattern=NAME.pattern)
    base_url: str = Field(min_length=1)
    max_concurrency: int | None = Field(default=None, ge=1)


class KeyParams(Params):
    upstream: str = Field(min_length=1)
    key: str | None = None  # None or "": forget the editor's key

    def __repr__(self) -> str:
        return f"KeyParams(upstream={self.upstream!r}, key=***)"


def result(ls: SidecarServer) -> UpstreamsResult:
    return UpstreamsResult(upstreams=ls.router.statuses())


async def list_upstreams(ls: SidecarServer, params: Any) -> UpstreamsResult:
    with rpc_errors():
        await ls.router.models()  # refreshes each upstream's listing state
    return result(ls)


async def add(ls: SidecarServer, params: Any) -> UpstreamsResult:
    p = parse(AddParams, params)
    extra = {"max_concurrency": p.max_concurrency} if p.max_concurrency else {}
    try:
        settings = UpstreamSettings.model_validate({"base_url": p.base_url, **extra})
    except ValidationError as e:
        raise JsonRpcInvalidParams(f"baseUrl: {e.errors()[0]['msg']}") from None
    ls.router.add(p.name, settings)
    return result(ls)


async def set_key(ls: SidecarServer, params: Any) -> UpstreamsResult:
    try:
        p = parse(KeyParams, params)
    except JsonRpcInvalidParams:  # its message may quote the key: name the fields only
        raise JsonRpcInvalidParams(
            "invalid params: setKey takes {upstream: str, key: str}"
        ) from None
    if p.upstream not in ls.router.upstreams:
        raise JsonRpcInvalidParams(
            f"upstream: no upstream named {p.upstream!r} (add it with mlx/upstreams/add or in "
            "the config file)"
        )
    ls.router.set_key(p.upstream, p.key)
    return result(ls)


def chat_body(params: Any) -> dict[str, Any]:
    """`mlx/chat` params as an OpenAI chat request body."""
    body: dict[str, Any] = {
        # content parts (images) as the plain OpenAI dicts an upstream takes
        "messages": [{"role": m.role, "content": to_template(m.content)} for m in params.messages],
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    if params.seed is not None:
        body["seed"] = params.seed
    if params.stop:
        body["stop"] = params.stop
    return body


async def remote_chat(ls: SidecarServer, remote: Remote, params: Any) -> ChatResult:
    """A chat answered by an upstream, its text streamed as `mlx/chat/delta` like a local one.
    `$/cancelRequest` cancels this task, which closes the upstream request."""
    parts: list[str] = []
    usage: dict[str, Any] = {}
    finish = "stop"
    with rpc_errors():
        events = ls.router.stream(remote, "chat", chat_body(params), include_usage=True)
        try:
            async for event in events:
                if "error" in event:
                    message = (event.get("error") or {}).get("message", "stream failed")
                    raise UpstreamError(remote.name, f"stream failed: {message}")
                usage = event.get("usage") or usage
                text = content_of(event)
                if text:
                    parts.append(text)
                    if params.stream_token is not None:
                        notify.chat_delta(ls, params.stream_token, text)
                for choice in event.get("choices") or []:
                    finish = choice.get("finish_reason") or finish
        finally:
            await events.aclose()  # type: ignore[attr-defined]
    return ChatResult(
        text="".join(parts),
        finish_reason="length" if finish == "length" else "stop",
        model=remote.id,
        usage=Usage.of(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
        time_to_first_token_s=None,
        tokens_per_s=None,
        served_by=remote.name,
        fallback_reason=None if remote.reason == "requested" else remote.reason,
    )


async def remote_embed(ls: SidecarServer, remote: Remote, texts: list[str]) -> EmbedResult:
    with rpc_errors():
        reply = await ls.router.call(remote, "embedding", {"input": texts})
    data = sorted(reply.get("data") or [], key=lambda d: d.get("index", 0))
    usage = reply.get("usage") or {}
    return EmbedResult(
        data=[d["embedding"] for d in data],
        model=remote.id,
        usage=Usage.of(int(usage.get("prompt_tokens", 0))),
        served_by=remote.name,
    )

"""Where a request goes: the local engine or an upstream. Both edges (the OpenAI port and the
editor's JSON-RPC server) ask `Router.route` before they run a chat, completion or embedding, and
send what it routes away with `Router.stream` / `Router.call`, so the rule lives here once:

- a model id `UPSTREAM/MODEL` whose UPSTREAM is configured goes to that upstream;
- otherwise, when the role has a fallback (`[fallback] chat = "team/MODEL"`), the request goes
  there if the oldest local request of its class has waited longer than `max_queue_wait_s`, if
  the local model does not load (memory budget, load error), or if the prompt does not fit the
  local model's context;
- anything else is the local engine's.

Every upstream request is reported to the `UsageSink` (tokens from the upstream's `usage`,
which streams ask for with `stream_options.include_usage`, else counted from the deltas)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from sidecar.engine.requests import Priority
from sidecar.errors import ErrorKind, SidecarError, Unavailable, UpstreamError
from sidecar.upstreams.catalog import Catalog
from sidecar.upstreams.client import Upstream
from sidecar.upstreams.keys import Keys
from sidecar.upstreams.settings import FallbackSettings, UpstreamSettings
from sidecar.usage.events import Endpoint, UsageEvent, UsageSink, discard
from sidecar.wire import RemoteModel, UpstreamStatus

if TYPE_CHECKING:
    from sidecar.config import Settings
    from sidecar.engine.engine import Engine

log = logging.getLogger(__name__)

Reason = Literal["requested", "load_failed", "queue_wait", "context_length"]
PATHS: dict[Endpoint, str] = {
    "chat": "chat/completions",
    "completion": "completions",
    "embedding": "embeddings",
}
PRIORITY: dict[Endpoint, Priority] = {"chat": Priority.CHAT, "completion": Priority.COMPLETION}
# A local model that cannot serve: over the memory budget, or files that do not load.
CANNOT_LOAD = (ErrorKind.UNAVAILABLE, ErrorKind.LOAD_FAILED)


@dataclass(frozen=True)
class Remote:
    """A request routed to an upstream: which, the model id it knows, and why."""

    upstream: Upstream
    model: str
    reason: Reason

    @property
    def name(self) -> str:
        return self.upstream.name

    @property
    def id(self) -> str:
        return f"{self.upstream.name}/{self.model}"


class Router:
    def __init__(self, engine: Engine, settings: Settings, usage: UsageSink = discard) -> None:
        self.engine = engine
        self.usage = usage
        self.keys = Keys()
        self.fallback: FallbackSettings = settings.fallback
        self.upstreams: dict[str, Upstream] = {}
        self.catalog = Catalog()
        self.retired: list[Upstream] = []
        for name, upstream in settings.upstreams.items():
            self.add(name, upstream)
        for role in PATHS:
            target = getattr(self.fallback, role)
            if target and target.split("/", 1)[0] not in self.upstreams:
                log.error("fallback.%s = %r names no configured upstream", role, target)

    async def close(self) -> None:
        for upstream in [*self.upstreams.values(), *self.retired]:
            await upstream.close()

    # -- upstreams ---------------------------------------------------------------------------

    def add(self, name: str, settings: UpstreamSettings) -> None:
        """Declare (or redeclare) an upstream; its key stays where it was set."""
        old = self.upstreams.get(name)
        self.upstreams[name] = Upstream(name, settings, self.keys)
        self.catalog.forget(name)
        if old is not None:
            self.retired.append(old)  # requests may still run on it: closed with the router
        log.info("upstream %s at %s", name, settings.base_url)

    def set_key(self, name: str, key: str | None) -> None:
        self.keys.set(name, key)
        self.catalog.forget(name)  # the list may differ with another key

    def statuses(self) -> list[UpstreamStatus]:
        return [
            UpstreamStatus(
                name=u.name,
                base_url=u.settings.base_url,
                key_source=self.keys.source(u.name, u.settings),
                breaker=u.breaker.state(),
                consecutive_failures=u.breaker.consecutive,
                in_flight=u.in_flight,
                models=len(listing.models) if (listing := self.catalog.listings.get(u.name)) else 0,
                error=listing.error if listing else None,
            )
            for u in self.upstreams.values()
        ]

    async def models(self) -> list[RemoteModel]:
        return await self.catalog.models(list(self.upstreams.values()))

    def listing_errors(self) -> list[dict[str, str]]:
        """Upstreams whose models could not be listed (`GET /v1/models`'s `upstream_errors`)."""
        return [e for e in self.catalog.errors() if e["upstream"] in self.upstreams]

    # -- routing -----------------------------------------------------------------------------

    def named(self, model: str | None) -> Remote | None:
        """The upstream a model id names (`UPSTREAM/MODEL`), None for a local id."""
        if not model or "/" not in model:
            return None
        name, rest = model.split("/", 1)
        upstream = self.upstreams.get(name)
        if upstream is None or not rest:
            return None
        return Remote(upstream, rest, "requested")

    def fallback_of(self, role: Endpoint, reason: Reason) -> Remote | None:
        target = getattr(self.fallback, role)
        remote = self.named(target)
        if target and remote is None:
            raise Unavailable(f"fallback.{role} = {target!r} names no configured upstream")
        return Remote(remote.upstream, remote.model, reason) if remote else None

    async def route(
        self,
        role: Endpoint,
        model: str | None,
        default: str,
        *,
        prompt_tokens: Callable[[Any], int] | None = None,
        text: str | None = None,
        max_tokens: int | None = None,
    ) -> Remote | None:
        """Where a request for `model` (None: the role's `default`) goes; None: the local
        engine. Raises what the local engine raises when there is no fallback. The context
        check measures `prompt_tokens(loaded)` (a chat turn's, `TurnInput.prompt_tokens`, which
        the turn then reuses) or the raw `text`."""
        local = model or default  # the role's model may be remote too (the editor picked one)
        named = self.named(local)
        if named is not None or not getattr(self.fallback, role):
            return named
        bound = self.fallback.max_queue_wait_s
        if bound is not None and role in PRIORITY:
            waited = self.engine.oldest_wait_s(PRIORITY[role])
            if waited > bound:
                return self.fell_back(role, local, "queue_wait", f"waited {waited:.2f} s")
        try:
            loaded = await self.engine.load(local)
        except SidecarError as e:
            if e.kind not in CANNOT_LOAD:
                raise
            return self.fell_back(role, local, "load_failed", str(e))
        if loaded.kind != "text" or (prompt_tokens is None and text is None):
            return None
        if prompt_tokens is not None:
            try:
                length = prompt_tokens(loaded)
            except SidecarError:
                return None  # a prompt that does not render: the local turn says why
        else:
            length = len(await self.engine.tokenize(text or "", loaded.id))
        room = loaded.context_length - length
        if room < 1 or (max_tokens or 1) > room:
            return self.fell_back(role, local, "context_length", f"{length} prompt tokens")
        return None

    def fell_back(self, role: Endpoint, local: str, reason: Reason, why: str) -> Remote | None:
        remote = self.fallback_of(role, reason)
        if remote is not None:
            log.info("%s for %s goes to %s (%s: %s)", role, local, remote.id, reason, why)
        return remote

    # -- calls -------------------------------------------------------------------------------

    def body_for(self, remote: Remote, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "model": remote.model}

    async def call(
        self, remote: Remote, endpoint: Endpoint, body: dict[str, Any]
    ) -> dict[str, Any]:
        """One non-streamed request; the reply with `model` as this side names it."""
        started = time.perf_counter()
        usage: dict[str, Any] = {}
        error = True
        try:
            body = {k: v for k, v in self.body_for(remote, body).items() if k != "stream_options"}
            body["stream"] = False
            async with remote.upstream.request("POST", PATHS[endpoint], body) as response:
                raw = await response.read()
            try:
                reply = remote.upstream.redact.json(orjson.loads(raw))
            except orjson.JSONDecodeError:
                raise UpstreamError(remote.name, "sent a reply that is not JSON") from None
            if not isinstance(reply, dict):
                raise UpstreamError(remote.name, "sent a reply that is not a JSON object")
            usage = reply.get("usage") or {}
            reply["model"] = remote.id
            error = False
            return reply
        finally:
            self.report(remote, endpoint, started, usage, 0, error)

    async def stream(
        self, remote: Remote, endpoint: Endpoint, body: dict[str, Any], include_usage: bool
    ) -> AsyncIterator[dict[str, Any]]:
        """The upstream's SSE events, parsed, as they come (`model` renamed); ends at
        `[DONE]`. The upstream request opens at the first `anext` (errors raise there) and
        closes when the iterator is closed. The usage chunk is passed on only when the
        client asked for it (`include_usage`); it is always asked of the upstream."""
        started = time.perf_counter()
        usage: dict[str, Any] = {}
        deltas = 0
        error = True
        body = {**self.body_for(remote, body), "stream": True}
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        # An upstream that ignores max_tokens is not relayed past it (a delta is a token or more)
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        upstream = remote.upstream
        try:
            async with upstream.request("POST", PATHS[endpoint], body) as response:
                if response.content_type != "text/event-stream":
                    raise upstream.error(
                        "answered a streamed request with Content-Type "
                        f"{response.content_type or 'none'!r}, not text/event-stream"
                    )
                events = produced = 0  # events; those with new output (a token or more)
                async for line in response.lines():
                    if not line.startswith("data:"):
                        continue  # SSE comments, event names, blank separators
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        event = upstream.redact.json(orjson.loads(data))
                    except orjson.JSONDecodeError:
                        raise UpstreamError(remote.name, "sent a malformed stream event") from None
                    if not isinstance(event, dict):
                        continue
                    events += 1
                    if event.get("usage"):
                        usage = event["usage"]
                        if not event.get("choices") and not include_usage:
                            continue
                    if not include_usage:  # the client did not ask for usage: no "usage" key
                        event.pop("usage", None)
                    if event.get("choices"):
                        deltas += 1
                    if "model" in event:
                        event["model"] = remote.id
                    produced += carries_output(event)
                    if isinstance(cap, int) and produced > cap:
                        log.warning("upstream %s ran past max_tokens=%d: cut", remote.name, cap)
                        yield length_event(event)
                        break
                    yield event
                if not events:
                    raise upstream.error("ended its stream without a single event")
            error = False
        finally:
            self.report(remote, endpoint, started, usage, deltas, error)

    def report(
        self,
        remote: Remote,
        endpoint: Endpoint,
        started: float,
        usage: dict[str, Any],
        deltas: int,
        error: bool,
    ) -> None:
        prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        completion = usage.get("completion_tokens") if isinstance(usage, dict) else None
        self.usage(
            UsageEvent(
                model=remote.id,
                endpoint=endpoint,
                prompt_tokens=int(prompt or 0),
                completion_tokens=int(completion if completion is not None else deltas),
                latency_s=time.perf_counter() - started,
                error=error,
                upstream=remote.name,
            )
        )


def length_event(event: dict[str, Any]) -> dict[str, Any]:
    """The closing chunk of a stream cut at max_tokens: no new text, finish_reason "length"."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
    first = (event.get("choices") or [{}])[0]
    if isinstance(first, dict) and "delta" in first:
        choice["delta"] = {}
    else:
        choice["text"] = ""
    keep = {k: v for k, v in event.items() if k in ("id", "object", "created", "model")}
    return {**keep, "choices": [choice]}


def carries_output(event: dict[str, Any]) -> bool:
    """Whether a stream event adds output (text, reasoning, tool call arguments), not only a
    role, a finish_reason or usage."""
    for choice in event.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and any(v for k, v in delta.items() if k != "role"):
            return True
        if choice.get("text"):
            return True
    return False


def content_of(event: dict[str, Any]) -> str:
    """The text a chat or completion stream event adds."""
    choices = event.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return ""
    choice = choices[0]
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return str(delta.get("content") or "")
    return str(choice.get("text") or "")

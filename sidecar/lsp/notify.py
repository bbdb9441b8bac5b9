"""Notifications the sidecar sends the editor (their shapes are in `sidecar.wire`). Call from
the asyncio loop (pygls' transport is not thread-safe: from another thread, go through
`loop.call_soon_threadsafe`)."""

from __future__ import annotations

from pydantic import BaseModel
from pygls.lsp.server import LanguageServer

from sidecar.lsp.session import SidecarServer
from sidecar.models.listing import local_models
from sidecar.wire import ChangeReason, ChatDelta, ModelsChanged, ToolCall

MODELS_CHANGED = "mlx/models/changed"
CHAT_DELTA = "mlx/chat/delta"


def notify(ls: LanguageServer, method: str, params: BaseModel) -> None:
    ls.protocol.notify(method, params)


async def models_changed(ls: SidecarServer, reason: ChangeReason, model: str | None) -> None:
    """Tell the editor the local models changed, with the list as it is now. What changes the
    shared engine (a download, a delete, a load, an unload) is told to every session on it (the
    daemon's other windows too), each with its own roles; a selection only to its own."""
    targets = [ls] if reason == "selected" else ls.peers()
    for target in [t for t in targets if t is ls or getattr(t.protocol, "initialize_seen", True)]:
        models = await local_models(target.engine, target.roles)
        notify(target, MODELS_CHANGED, ModelsChanged(reason=reason, model=model, models=models))


def chat_delta(
    ls: LanguageServer,
    stream_token: str | int,
    delta: str,
    reasoning: str | None = None,
    tool_calls: list[ToolCall] | None = None,
) -> None:
    message = ChatDelta(
        stream_token=stream_token, delta=delta, reasoning=reasoning, tool_calls=tool_calls
    )
    notify(ls, CHAT_DELTA, message)

"""Notifications the sidecar sends the editor (their shapes are in `sidecar.wire`). Call from
the asyncio loop (pygls' transport is not thread-safe: from another thread, go through
`loop.call_soon_threadsafe`)."""

from __future__ import annotations

from pydantic import BaseModel
from pygls.lsp.server import LanguageServer

from sidecar.lsp.session import SidecarServer
from sidecar.wire import ChangeReason, ChatDelta, ModelsChanged, ToolCall, local_models

MODELS_CHANGED = "mlx/models/changed"
CHAT_DELTA = "mlx/chat/delta"


def notify(ls: LanguageServer, method: str, params: BaseModel) -> None:
    ls.protocol.notify(method, params)


async def models_changed(ls: SidecarServer, reason: ChangeReason, model: str | None) -> None:
    """Tell the editor the local models changed, with the list as it is now."""
    models = await local_models(ls.engine, ls.roles)
    notify(ls, MODELS_CHANGED, ModelsChanged(reason=reason, model=model, models=models))


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

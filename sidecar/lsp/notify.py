"""Notifications the sidecar sends the editor; call from the asyncio loop (pygls' transport is
not thread-safe: from another thread, go through `loop.call_soon_threadsafe`)."""

from __future__ import annotations

from typing import Any

from pygls.lsp.server import LanguageServer

MODELS_CHANGED = "mlx/models/changed"
CHAT_DELTA = "mlx/chat/delta"


def notify(ls: LanguageServer, method: str, params: dict[str, Any]) -> None:
    ls.protocol.notify(method, params)


def models_changed(ls: LanguageServer, reason: str, model: str | None = None) -> None:
    """Tell the editor to refresh its model list (`reason`: downloaded, deleted, loaded,
    unloaded, selected)."""
    notify(ls, MODELS_CHANGED, {"reason": reason, "model": model})


def chat_delta(ls: LanguageServer, stream_token: str | int, delta: str) -> None:
    notify(ls, CHAT_DELTA, {"stream_token": stream_token, "delta": delta})

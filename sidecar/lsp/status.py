"""`mlx/status`: the engine's state plus what only the editor's server knows."""

from __future__ import annotations

from typing import Any

from sidecar.lsp.session import SidecarServer


async def status(ls: SidecarServer, params: Any) -> dict[str, Any]:
    data = ls.engine.status()
    data["http_url"] = ls.http_url
    data["roles"] = dict(ls.roles)
    data["completion"] = ls.options.completion.model_dump()
    workspace = getattr(ls.protocol, "_workspace", None)  # None before initialize
    data["open_documents"] = len(workspace.text_documents) if workspace is not None else 0
    return data

"""`mlx/status`: the engine's state plus what only the editor's server knows."""

from __future__ import annotations

from typing import Any

from sidecar.lsp.session import SidecarServer
from sidecar.lsp.workspace import current_status
from sidecar.wire import CompletionSessionStats, EditorStatus, RoleModels


async def status(ls: SidecarServer, params: Any) -> EditorStatus:
    workspace = getattr(ls.protocol, "_workspace", None)  # None before initialize
    return EditorStatus(
        **dict(ls.engine.status()),
        http_url=ls.http_url,
        roles=RoleModels.model_validate(dict(ls.roles)),
        completion=ls.options.completion,
        completion_session=CompletionSessionStats.model_validate(ls.completions.stats()),
        open_documents=len(workspace.text_documents) if workspace is not None else 0,
        upstreams=ls.router.statuses(),
        workspace=current_status(ls),
    )

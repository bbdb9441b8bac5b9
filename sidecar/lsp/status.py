"""`mlx/status`: the engine's state plus what only the editor's server knows."""

from __future__ import annotations

from typing import Any

from sidecar.completion.options import CompletionOptions
from sidecar.lsp.session import SidecarServer
from sidecar.lsp.workspace import current_status
from sidecar.wire import (
    CompletionSessionStats,
    EngineStatus,
    RoleModels,
    UpstreamStatus,
    WorkspaceStatus,
)


# Here rather than in sidecar.wire: it carries the editor's completion options, which live with
# the completion code (and that imports the engine, which imports sidecar.wire).
class EditorStatus(EngineStatus):
    """`mlx/status`: the engine's state, and the editor's roles, options and open documents."""

    http_url: str | None  # the OpenAI port, when the editor asked for one
    roles: RoleModels
    completion: CompletionOptions
    completion_session: CompletionSessionStats
    open_documents: int
    upstreams: list[UpstreamStatus]  # each upstream's URL, key source, breaker (never its key)
    workspace: WorkspaceStatus  # the index of the workspace last indexed (root None: none)


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

"""JSON-RPC for the workspace index (thin; the logic is in `sidecar.workspace`):

- `mlx/workspace/index` `{root?, workDoneToken?}`: index the workspace (incremental after the
  first run), `$/progress` on the token, cancellable (`$/cancelRequest` or
  `window/workDoneProgress/cancel`, error -32800); -> WorkspaceIndexResult.
- `mlx/workspace/update` `{root?, changed?, deleted?, renamed?: [{old, new}]}`: files the editor
  saved, created, deleted or renamed (paths absolute, file:// URIs or relative to the root);
  -> WorkspaceIndexResult. This is the index's one trigger for changes (VS Code's extension sends
  it from a file watcher, which sees saves, creates, deletes and renames, also from outside the
  editor); `textDocument/didSave` is not a second one (each save indexed twice).
- `mlx/workspace/search` `{query, k?, root?, mode?}` -> WorkspaceSearchResult.
- `mlx/workspace/status` `{root?}` -> WorkspaceStatus.
`root` defaults to the root last indexed, else the editor's first workspace folder.
Also: `mlx/chat`'s `@workspace` hook (`chat_messages`), the inline completion session's
cross-file candidates from the index (`related_chunks`), and the user's last completion request
as the indexer's signal to yield (`sidecar/workspace/pacing.py`).

    register(server, engine)   # once, while the server is built (sidecar.lsp.server.PLUGINS)
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

from lsprotocol.types import WorkDoneProgressBegin, WorkDoneProgressEnd, WorkDoneProgressReport
from pydantic import Field

from sidecar.completion.context import Chunk
from sidecar.completion.related import RelatedContext
from sidecar.engine.engine import Engine
from sidecar.errors import InvalidRequest
from sidecar.lsp.errors import Params, parse, rpc_errors
from sidecar.lsp.session import SidecarServer
from sidecar.uris import uri_to_path
from sidecar.wire import (
    Source,
    WorkspaceHit,
    WorkspaceIndexResult,
    WorkspaceRun,
    WorkspaceSearchResult,
    WorkspaceStatus,
)
from sidecar.workspace import chat as workspace_chat
from sidecar.workspace.index import IndexRun, WorkspaceIndex
from sidecar.workspace.retrieval import Mode

log = logging.getLogger(__name__)

INDEX = "mlx/workspace/index"
UPDATE = "mlx/workspace/update"
SEARCH = "mlx/workspace/search"
STATUS = "mlx/workspace/status"
RELATED_CHUNKS = 4  # completion candidates looked up per document (most are left out by budget)
DEFAULT_MODE: Mode = "embedding"  # measured best on the fixture repo (README, "Workspace index")
EMPTY = WorkspaceStatus(
    root=None,
    files=0,
    chunks=0,
    bytes=0,
    index_bytes=0,
    last_indexed_at=None,
    indexing=False,
    model=None,
)


class WorkspaceIndexParams(Params):
    root: str | None = None
    work_done_token: str | int | None = None


class WorkspaceRename(Params):
    old: str
    new: str


class WorkspaceUpdateParams(Params):
    root: str | None = None
    changed: list[str] = Field(default=[], max_length=10000)
    deleted: list[str] = Field(default=[], max_length=10000)
    renamed: list[WorkspaceRename] = Field(default=[], max_length=10000)


class WorkspaceSearchParams(Params):
    query: str = Field(min_length=1, max_length=32768)
    k: int = Field(default=8, ge=1, le=50)
    root: str | None = None
    mode: Mode = DEFAULT_MODE


class WorkspaceStatusParams(Params):
    root: str | None = None


def editor_root(ls: SidecarServer) -> Path | None:
    """The editor's first workspace folder (else its root URI) as a local path."""
    workspace = getattr(ls.protocol, "_workspace", None)
    if workspace is None:
        return None
    folders = list(workspace.folders.values())
    uri = folders[0].uri if folders else workspace.root_uri
    return uri_to_path(uri) if uri else None


def index_for(ls: SidecarServer, root: str | None) -> WorkspaceIndex | None:
    ls.workspaces.default_root = editor_root(ls)
    return ls.workspaces.current(root)


def required(ls: SidecarServer, root: str | None) -> WorkspaceIndex:
    index = index_for(ls, root)
    if index is None:
        raise InvalidRequest(
            "no workspace index: give 'root', or index the workspace first (mlx/workspace/index)"
        )
    return index


def status_of(index: WorkspaceIndex | None) -> WorkspaceStatus:
    return EMPTY if index is None else WorkspaceStatus.model_validate(index.status())


def result(run: IndexRun, index: WorkspaceIndex) -> WorkspaceIndexResult:
    return WorkspaceIndexResult(
        run=WorkspaceRun.model_validate(run.__dict__), status=status_of(index)
    )


class Progress:
    """`$/progress` for one indexing run on the client's token; its cancel sets `cancel`."""

    def __init__(self, ls: SidecarServer, token: str | int | None, root: Path) -> None:
        self.ls, self.token = ls, token
        self.cancel = threading.Event()
        if token is None:
            return
        ls.work_done_progress.begin(
            token, WorkDoneProgressBegin(title=f"Indexing {root.name}", cancellable=True)
        )
        future = ls.work_done_progress.tokens.get(token)
        if future is not None:
            future.add_done_callback(lambda f: self.cancel.set() if f.cancelled() else None)

    def __call__(self, done: int, total: int, message: str) -> None:
        if self.token is not None:
            percent = 100 if total == 0 else int(100 * done / total)
            value = WorkDoneProgressReport(message=message, percentage=percent, cancellable=True)
            self.ls.work_done_progress.report(self.token, value)

    def end(self, message: str) -> None:
        if self.token is not None:
            self.ls.work_done_progress.end(self.token, WorkDoneProgressEnd(message=message))
            self.ls.work_done_progress.tokens.pop(self.token, None)


async def index(ls: SidecarServer, params: Any) -> WorkspaceIndexResult:
    p = parse(WorkspaceIndexParams, params)
    with rpc_errors():
        workspace = required(ls, p.root)
        progress = Progress(ls, p.work_done_token, workspace.root)
        try:
            run = await workspace.index(progress, progress.cancel, ls.roles["embedding"])
        except BaseException as e:
            progress.end("cancelled" if isinstance(e, asyncio.CancelledError) else f"failed: {e}")
            raise
        progress.end(f"{run.files_indexed} files indexed, {run.files_unchanged} unchanged")
        return result(run, workspace)


async def update(ls: SidecarServer, params: Any) -> WorkspaceIndexResult:
    p = parse(WorkspaceUpdateParams, params)
    with rpc_errors():
        workspace = required(ls, p.root)
        renamed = [(r.old, r.new) for r in p.renamed]
        run = await workspace.update(p.changed, p.deleted, renamed, ls.roles["embedding"])
        return result(run, workspace)


async def search(ls: SidecarServer, params: Any) -> WorkspaceSearchResult:
    p = parse(WorkspaceSearchParams, params)
    with rpc_errors():
        workspace = required(ls, p.root)
        hits = await workspace.search(p.query, p.k, p.mode, ls.roles["embedding"])
        return WorkspaceSearchResult(
            root=str(workspace.root),
            mode=p.mode,
            hits=[WorkspaceHit.model_validate(h.__dict__) for h in hits],
        )


async def status(ls: SidecarServer, params: Any) -> WorkspaceStatus:
    p = parse(WorkspaceStatusParams, params)
    with rpc_errors():
        return status_of(index_for(ls, p.root))


def current_status(ls: SidecarServer) -> WorkspaceStatus:
    """For `mlx/status`: the current workspace's index, without opening one."""
    root = ls.workspaces.last_root
    return status_of(ls.workspaces.indexes.get(root) if root is not None else None)


async def chat_messages(
    ls: SidecarServer, messages: list[dict[str, Any]], model: str
) -> tuple[list[dict[str, Any]], list[Source]]:
    """`mlx/chat`'s hook: with `@workspace` in the last user message, the retrieved chunks go
    into it; the chunks used come back as the reply's sources. Unchanged otherwise."""
    if not workspace_chat.mentions_workspace(messages):
        return messages, []
    workspace = required(ls, None)
    embedding = ls.roles["embedding"]
    settings = ls.engine.settings

    async def count(text: str) -> int:
        return len(await ls.engine.tokenize(text, model))

    async def retrieve(question: str, k: int, mode: Mode) -> Any:
        return await workspace.search(question, k, mode, embedding)

    out, used = await workspace_chat.augment(
        messages,
        retrieve,
        count,
        settings.workspace_chat_tokens,
        settings.workspace_chat_chunks,
        DEFAULT_MODE,
    )
    return out, [Source(path=u.path, start_line=u.start_line, end_line=u.end_line) for u in used]


async def related_chunks(ls: SidecarServer, uri: str, query: str) -> list[Chunk]:
    """Cross-file completion candidates for the document `uri`: the workspace chunks nearest
    the code before the cursor (none outside an indexed workspace)."""
    path = uri_to_path(uri)
    if path is None or not query.strip():
        return []
    workspace = ls.workspaces.containing(path) or index_for(ls, None)
    if workspace is None or workspace.root not in path.parents:
        return []
    hits = await workspace.search(query, RELATED_CHUNKS, "embedding", ls.roles["embedding"])
    return [Chunk((workspace.root / h.path).as_uri(), h.start_line - 1, h.text) for h in hits]


def register(server: SidecarServer, engine: Engine) -> None:
    server.completions.related = RelatedContext(lambda uri, q: related_chunks(server, uri, q))
    server.feature(INDEX)(index)
    server.feature(UPDATE)(update)
    server.feature(SEARCH)(search)
    server.feature(STATUS)(status)

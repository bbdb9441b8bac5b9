"""The editor's language server: registers handlers only; each lives in the module named for
its concern (`sidecar.lsp.downloads` and `sidecar.lsp.workspace` register their own with
`register(server, engine)`)."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from lsprotocol import types

from sidecar import tracing
from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.lsp import (
    chat,
    documents,
    downloads,
    embed,
    inline,
    lifecycle,
    models,
    status,
    upstreams,
    workspace,
)
from sidecar.lsp.session import SidecarServer
from sidecar.roles import Roles
from sidecar.upstreams.router import Router

log = logging.getLogger(__name__)


def traced(method: str, handler: Callable[..., Any]) -> Callable[..., Any]:
    """`handler` inside a `jsonrpc METHOD` span when tracing is on (async handlers only: the
    sync ones do no model work)."""
    if not inspect.iscoroutinefunction(handler):
        return handler

    @functools.wraps(handler)
    async def run(ls: SidecarServer, params: Any) -> Any:
        with tracing.span(f"jsonrpc {method}", {"rpc.system": "jsonrpc", "rpc.method": method}):
            return await handler(ls, params)

    return run


def build_server(
    engine: Engine, settings: Settings, roles: Roles | None = None, router: Router | None = None
) -> SidecarServer:
    server = SidecarServer(engine, settings, roles, router)

    @server.feature(types.INITIALIZE)
    async def on_initialize(ls: SidecarServer, params: types.InitializeParams) -> None:
        await lifecycle.initialize(ls, params)

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def on_configuration(
        ls: SidecarServer, params: types.DidChangeConfigurationParams
    ) -> None:
        await lifecycle.did_change_configuration(ls, params)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def on_open(ls: SidecarServer, params: types.DidOpenTextDocumentParams) -> None:
        documents.did_open(ls, params)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def on_change(ls: SidecarServer, params: types.DidChangeTextDocumentParams) -> None:
        documents.did_change(ls, params)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def on_close(ls: SidecarServer, params: types.DidCloseTextDocumentParams) -> None:
        documents.did_close(ls, params)

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def on_inline(
        ls: SidecarServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList | None:
        with tracing.span("jsonrpc textDocument/inlineCompletion", {"rpc.method": "inline"}):
            return await inline.inline_completion(ls, params)

    custom: dict[str, Callable[..., Any]] = {
        "mlx/chat": chat.chat,
        "mlx/embed": embed.embed,
        "mlx/models/list": models.list_models,
        "mlx/models/load": models.load,
        "mlx/models/unload": models.unload,
        "mlx/models/select": models.select,
        "mlx/status": status.status,
        "mlx/completion/stats": inline.completion_stats,
        "mlx/upstreams/list": upstreams.list_upstreams,
        "mlx/upstreams/add": upstreams.add,
        "mlx/upstreams/setKey": upstreams.set_key,
    }
    for method, handler in custom.items():
        server.feature(method)(traced(method, handler))

    downloads.register(server, engine)
    workspace.register(server, engine)
    return server

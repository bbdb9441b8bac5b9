"""JSON-RPC handlers for the hub: `mlx/models/search`, `mlx/models/download`, `mlx/models/delete`.

Thin: each calls `sidecar.models.hub` in a thread (never on the engine's worker, never blocking
the event loop). A download reports `$/progress` begin/report/end on the request's
`workDoneToken`; `$/cancelRequest` or `window/workDoneProgress/cancel` stops it and removes its
partial files. After a download or delete the client gets `mlx/models/changed` with the new
local model list.

    register(server, engine)   # once, while the server is built
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from lsprotocol.types import WorkDoneProgressBegin, WorkDoneProgressEnd, WorkDoneProgressReport
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from sidecar.engine.engine import Engine
from sidecar.errors import SidecarError
from sidecar.lsp import notify
from sidecar.lsp.errors import to_rpc
from sidecar.lsp.session import SidecarServer
from sidecar.models import hub
from sidecar.models.listing import model_entry
from sidecar.wire import DeleteResult, DownloadResult, Wire

log = logging.getLogger(__name__)

SEARCH = "mlx/models/search"
DOWNLOAD = "mlx/models/download"
DELETE = "mlx/models/delete"
REPORT_EVERY_S = 0.25


def as_dict(params: Any) -> dict[str, Any]:
    """pygls hands custom methods' params over as namedtuples; make plain dicts."""
    if params is None:
        return {}
    if isinstance(params, dict):
        return params
    if hasattr(params, "_asdict"):
        return {k: _plain(v) for k, v in params._asdict().items()}
    raise JsonRpcInvalidParams("params must be an object")


def _plain(value: Any) -> Any:
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _string(params: dict[str, Any], *names: str, required: bool = True) -> str | None:
    for name in names:
        value = params.get(name)
        if value is not None:
            if not isinstance(value, str) or not value:
                raise JsonRpcInvalidParams(f"'{name}' must be a non-empty string")
            return value
    if required:
        raise JsonRpcInvalidParams(f"missing '{names[0]}'")
    return None


class SearchResults(Wire):
    """`mlx/models/search`: hub models, most downloaded first."""

    models: list[hub.HubModel]


async def search(engine: Engine, params: dict[str, Any]) -> SearchResults:
    query = params.get("query") or ""
    if not isinstance(query, str):
        raise JsonRpcInvalidParams("'query' must be a string")
    author = params.get("author", hub.DEFAULT_AUTHOR)
    limit = params.get("limit", 20)
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise JsonRpcInvalidParams("'limit' must be an integer")
    try:
        results = await asyncio.to_thread(
            hub.search, query, author=author or None, limit=limit, store=engine.store
        )
    except SidecarError as e:
        raise to_rpc(e) from e
    return SearchResults(models=results)


class ProgressReporter:
    """Sends `$/progress` for one download from the download thread, at most every
    REPORT_EVERY_S; the client's cancel of the token sets `cancel`."""

    def __init__(
        self,
        server: LanguageServer,
        token: str | int | None,
        repo_id: str,
        cancel: threading.Event,
    ) -> None:
        self.server = server
        self.token = token
        self.repo_id = repo_id
        self.loop = asyncio.get_running_loop()
        self.last = 0.0
        if token is None:
            return
        server.work_done_progress.begin(
            token,
            WorkDoneProgressBegin(title=f"Downloading {repo_id}", cancellable=True, percentage=0),
        )
        future = server.work_done_progress.tokens.get(token)
        if future is not None:  # window/workDoneProgress/cancel cancels this future
            future.add_done_callback(lambda f: cancel.set() if f.cancelled() else None)

    def __call__(self, p: hub.DownloadProgress) -> None:  # on the download thread
        now = time.monotonic()
        if self.token is None or (
            now - self.last < REPORT_EVERY_S and p.bytes_done < p.bytes_total
        ):
            return
        self.last = now
        message = (
            f"{p.bytes_done / 1e6:.1f}/{p.bytes_total / 1e6:.1f} MB at "
            f"{p.rate_bps / 1e6:.1f} MB/s ({p.files_done}/{p.files_total} files)"
        )
        value = WorkDoneProgressReport(message=message, percentage=p.percent, cancellable=True)
        self.loop.call_soon_threadsafe(self.server.work_done_progress.report, self.token, value)

    def end(self, message: str) -> None:
        if self.token is None:
            return
        self.server.work_done_progress.end(self.token, WorkDoneProgressEnd(message=message))
        self.server.work_done_progress.tokens.pop(self.token, None)


async def download(server: SidecarServer, engine: Engine, params: dict[str, Any]) -> DownloadResult:
    repo_id = _string(params, "repo", "id", "model")
    assert repo_id is not None
    revision = _string(params, "revision", required=False)
    cancel = threading.Event()
    progress = ProgressReporter(server, params.get("workDoneToken"), repo_id, cancel)
    stats = hub.DownloadStats()
    job = asyncio.ensure_future(
        asyncio.to_thread(
            hub.download,
            repo_id,
            engine.store,
            revision=revision,
            progress=progress,
            cancel=cancel,
            stats=stats,
        )
    )
    try:
        info = await asyncio.shield(job)
    except asyncio.CancelledError:  # $/cancelRequest
        cancel.set()
        progress.end("cancelled")
        with contextlib.suppress(Exception):
            await job  # let it remove its partial files
        raise
    except hub.DownloadCancelledError as e:  # window/workDoneProgress/cancel
        progress.end("cancelled")
        raise to_rpc(e) from e
    except SidecarError as e:
        progress.end(f"failed: {e}")
        raise to_rpc(e) from e
    progress.end(f"downloaded {info.id}")
    await notify.models_changed(server, "downloaded", info.id)
    return DownloadResult(
        model=model_entry(info, engine.pool.models, server.roles),
        transferred_bytes=stats.transferred_bytes,
        resumed_bytes=stats.resumed_bytes,
    )


async def delete(server: SidecarServer, engine: Engine, params: dict[str, Any]) -> DeleteResult:
    model_id = _string(params, "id", "model")
    assert model_id is not None
    try:
        canonical = await asyncio.to_thread(engine.store.resolve_id, model_id)
        if engine.pool.get(canonical) is not None:
            await engine.unload(canonical)
        path = await asyncio.to_thread(hub.delete, engine.store, canonical)
    except SidecarError as e:
        raise to_rpc(e) from e
    await notify.models_changed(server, "deleted", canonical)
    return DeleteResult(deleted=canonical, path=str(path))


def register(server: SidecarServer, engine: Engine) -> None:
    @server.feature(SEARCH)
    async def _search(params: Any) -> SearchResults:
        return await search(engine, as_dict(params))

    @server.feature(DOWNLOAD)
    async def _download(params: Any) -> DownloadResult:
        return await download(server, engine, as_dict(params))

    @server.feature(DELETE)
    async def _delete(params: Any) -> DeleteResult:
        return await delete(server, engine, as_dict(params))

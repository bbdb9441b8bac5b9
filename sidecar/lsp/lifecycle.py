"""Initialize (typed options), configuration changes, exit, the exit-with-parent rule, and logs
forwarded to the editor's output (`window/logMessage`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pydantic import ValidationError

from sidecar.errors import InvalidModelIdError, ModelNotFoundError
from sidecar.lsp.errors import describe_errors
from sidecar.lsp.options import InitOptions, Role, merged, settings_section
from sidecar.lsp.session import SidecarServer

log = logging.getLogger(__name__)
PARENT_POLL_S = 1.0
LOG_TYPES = {
    logging.ERROR: types.MessageType.Error,
    logging.WARNING: types.MessageType.Warning,
    logging.INFO: types.MessageType.Info,
}


def warn_client(ls: SidecarServer, message: str) -> None:
    log.warning("%s", message)
    ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=message))


def options_from(ls: SidecarServer, raw: Any, base: InitOptions) -> InitOptions:
    """Options merged from `raw`; invalid options are reported and the old ones kept, so a
    typo in the editor's settings never stops the server."""
    try:
        return merged(base, settings_section(raw) if raw is not None else {})
    except ValidationError as e:
        warn_client(ls, f"mlx-sidecar settings ignored: {describe_errors(e)}")
        return base


def missing_roles(ls: SidecarServer) -> dict[Role, str]:
    """Role -> error, for the roles whose model is not installed."""
    problems: dict[Role, str] = {}
    for role, model in ls.roles.items():
        try:
            ls.engine.store.path_of(model)
        except (ModelNotFoundError, InvalidModelIdError) as e:
            problems[role] = str(e)
    return problems


async def check_roles(ls: SidecarServer) -> None:
    """Warn about role models that are not installed (and fall back to the defaults), so the
    editor hears about a typo now rather than as failing completions."""
    for role, error in (await asyncio.to_thread(missing_roles, ls)).items():
        fallback = ls.default_roles[role]
        warn_client(ls, f"{role} model: {error}; using {fallback!r}")
        ls.set_role(role, fallback)


def workspace_name(params: types.InitializeParams) -> str | None:
    """The first workspace folder's name (else the root URI's last component): the repo name
    of the repo-level FIM formats."""
    if params.workspace_folders:
        return params.workspace_folders[0].name or None
    root = params.root_uri or params.root_path
    if root:
        name = unquote(root.rstrip("/").rsplit("/", 1)[-1])
        return name or None
    return None


async def initialize(ls: SidecarServer, params: types.InitializeParams) -> None:
    ls.apply_options(options_from(ls, params.initialization_options, ls.options))
    ls.completions.repo = workspace_name(params)
    await check_roles(ls)
    if params.process_id:
        ls.watch_task = asyncio.ensure_future(watch_parent(ls, params.process_id))
    port = ls.options.http_port  # 0 is the editor's "off" (the command line's 0 picks a port)
    if port and ls.http_url is None and ls.start_http is not None:
        try:
            ls.http_url = await ls.start_http(port)
        except Exception as e:  # a busy port must not stop the editor's server
            warn_client(ls, f"could not start the OpenAI port on {port}: {e}")


async def did_change_configuration(
    ls: SidecarServer, params: types.DidChangeConfigurationParams
) -> None:
    ls.apply_options(options_from(ls, params.settings, ls.options))
    await check_roles(ls)


def parent_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


async def watch_parent(ls: SidecarServer, pid: int) -> None:
    """Exit when the editor that started us is gone (it may die without sending `exit`)."""
    while parent_alive(pid):
        await asyncio.sleep(PARENT_POLL_S)
    log.warning("parent process %d is gone; exiting", pid)
    ls.request_stop(0)


class ClientLogHandler(logging.Handler):
    """Forwards log records to the editor as `window/logMessage` (from any thread)."""

    def __init__(self, ls: SidecarServer, loop: asyncio.AbstractEventLoop, level: int) -> None:
        super().__init__(level)
        self.ls = ls
        self.loop = loop

    def emit(self, record: logging.LogRecord) -> None:
        if self.ls.protocol.writer is None or self.loop.is_closed():
            return
        kind = LOG_TYPES.get(record.levelno, types.MessageType.Log)
        if record.levelno > logging.ERROR:
            kind = types.MessageType.Error
        params = types.LogMessageParams(type=kind, message=self.format(record))
        with contextlib.suppress(RuntimeError):  # loop closing
            self.loop.call_soon_threadsafe(self.ls.window_log_message, params)

"""The language server object and the state its handlers share: the engine, the options the
editor set, the model for each role, and the inline completion session (cache, context ring,
the generation in flight)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from lsprotocol import types
from pydantic import BaseModel
from pygls.lsp.server import LanguageServer
from pygls.protocol import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    LanguageServerProtocol,
    default_converter,
    lsp_method,
)

import sidecar
from sidecar.completion.session import CompletionSession
from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.lsp.errors import data_code
from sidecar.lsp.options import InitOptions, Role, default_roles
from sidecar.roles import Roles
from sidecar.upstreams.router import Router
from sidecar.workspace.registry import Workspaces

log = logging.getLogger(__name__)

StartHttp = Callable[[int], Awaitable[str]]


def converter_factory() -> Any:
    """pygls' converter, except that custom requests keep their params as plain JSON (dicts),
    which the handlers validate with pydantic, instead of namedtuples."""
    converter = default_converter()

    def keep_params(obj: dict[str, Any], cls: type) -> Any:
        return cls(**{"params": None, **obj})

    converter.register_structure_hook(JsonRPCRequestMessage, keep_params)
    converter.register_structure_hook(JsonRPCNotification, keep_params)
    return converter


SERVER_NOT_INITIALIZED = -32002
INVALID_REQUEST = -32600


class SidecarProtocol(LanguageServerProtocol):
    """pygls' LSP protocol plus the lifecycle rules it leaves out: before `initialize` a request
    gets -32002 and a notification is dropped (`exit` excepted); a second `initialize`, or a
    request after `shutdown`, gets -32600 instead of being run or left unanswered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initialize_seen = False

    def refusal(self, method: str) -> types.ResponseError | None:
        if method == types.EXIT:
            return None
        if method == types.INITIALIZE and not self.initialize_seen:
            self.initialize_seen = True
            return None
        if method == types.INITIALIZE:
            return types.ResponseError(INVALID_REQUEST, "initialize may only be sent once")
        if not self.initialize_seen:
            message = f"server not initialized: {method} before initialize"
            return types.ResponseError(SERVER_NOT_INITIALIZED, message)
        if self._shutdown:
            return types.ResponseError(INVALID_REQUEST, f"{method} after shutdown")
        return None

    def _send_response(
        self, msg_id: Any, result: Any = None, error: types.ResponseError | None = None
    ) -> None:
        """Every error reply carries its machine code in `data.code` (sidecar/lsp/errors.py).
        pygls puts the traceback of an unexpected error in `data`: the editor gets the message,
        the traceback stays in the log (pygls logs it)."""
        if error is not None:
            data = data_code(error.code, error.data)
            data.pop("traceback", None)
            error = types.ResponseError(code=error.code, message=error.message, data=data)
        super()._send_response(msg_id, result, error)

    def _serialize_message(self, data: Any) -> Any:
        """Handlers return `sidecar.wire` models: JSON them as pydantic would (pygls knows attrs
        classes only, and falls back to `__dict__`, which leaves nested values unconverted)."""
        if isinstance(data, BaseModel):
            return data.model_dump(mode="json")
        return super()._serialize_message(data)

    def handle_message(self, message: Any) -> None:
        method = getattr(message, "method", None)
        error = self.refusal(method) if isinstance(method, str) else None
        if error is None:
            super().handle_message(message)
        elif getattr(message, "id", None) is not None:
            self._send_response(message.id, error=error)
        else:
            log.debug("dropped %s: %s", method, error.message)

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args: Any) -> None:  # type: ignore[override]  # pygls takes a plain method
        """`exit`: 0 after `shutdown`, 1 without (the LSP rule). pygls would `sys.exit` inside
        the loop; instead the stdio runner is told to clean up and exit."""
        cast("SidecarServer", self._server).request_stop(0 if self._shutdown else 1)


class SidecarServer(LanguageServer):
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        roles: Roles | None = None,
        router: Router | None = None,
    ) -> None:
        super().__init__(
            "mlx-sidecar",
            sidecar.__version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=SidecarProtocol,
            converter_factory=converter_factory,
        )
        self.engine = engine
        self.settings = settings
        self.options = InitOptions()
        self.default_roles: dict[Role, str] = default_roles(settings)  # before any change
        # Shared with the OpenAI port when the CLI starts one (see sidecar/roles.py).
        self.roles: Roles = roles if roles is not None else Roles(self.default_roles)
        self.completions = CompletionSession(engine, self.options.completion)
        # Upstreams (keys set by the editor, endpoints it adds), shared with the OpenAI port.
        self.router = (
            router if router is not None else Router(engine, settings, usage=engine.record_usage)
        )
        self.http_url: str | None = None
        self.start_http: StartHttp | None = None  # given by the CLI, which owns the port
        self.stop_requested = asyncio.Event()
        self.exit_code = 0
        self.watch_task: asyncio.Task[None] | None = None
        # The sessions on this engine (the daemon gives each the live list), for notifications
        # about the engine's models.
        self.peers: Callable[[], list[SidecarServer]] = lambda: [self]
        # Workspace indexes (sidecar/lsp/workspace.py): indexing yields to the user's typing.
        self.workspaces = Workspaces(engine, settings, lambda: self.completions.last_request_at)

    def apply_options(self, options: InitOptions) -> None:
        """Adopt new options: roles whose setting changed (a model chosen with
        `mlx/models/select` stays until the setting itself changes), completion settings."""
        old_models = self.options.models.model_dump()
        self.options = options
        for role, model in options.models.model_dump().items():
            if model and model != old_models.get(role):
                self.set_role(cast(Role, role), model)
        self.completions.configure(options.completion)

    def set_role(self, role: Role, model_id: str) -> None:
        if self.roles.get(role) == model_id:
            return
        self.roles[role] = model_id
        if role == "completion":
            self.completions.model_changed()

    def request_stop(self, code: int = 0) -> None:
        self.exit_code = code
        self.stop_requested.set()

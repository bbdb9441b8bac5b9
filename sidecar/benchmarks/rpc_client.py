"""A JSON-RPC client on a `mlx-sidecar stdio` subprocess, for the benchmarks that drive the
sidecar as the editor does: pygls' own LanguageClient, plus what it leaves to its user (its
stderr pipe must be read or the server blocks; requests with chosen ids, to cancel them)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient


class SidecarClient:
    def __init__(self, name: str) -> None:
        self.lsp = LanguageClient(name, "1")
        self._stderr: list[bytes] = []
        self._drain: asyncio.Task[None] | None = None
        self.pid = 0

        @self.lsp.feature("mlx/models/changed")
        def on_models_changed(params: Any) -> None:  # benchmarks do not track the model list
            pass

    async def start(
        self, env: dict[str, str], *args: str, init_options: dict[str, Any] | None = None
    ) -> None:
        await self.lsp.start_io(sys.executable, "-m", "sidecar", "stdio", *args, env=env)
        server = self.lsp._server  # pygls keeps the process here
        assert server is not None and server.stderr is not None
        self.pid = server.pid
        self._drain = asyncio.create_task(self._read_stderr(server.stderr))
        await self.lsp.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(), initialization_options=init_options
            )
        )
        self.lsp.initialized(types.InitializedParams())

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self._stderr = [*self._stderr[-500:], line]

    def stderr_text(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")

    def open(self, uri: str, text: str, language: str) -> None:
        self.lsp.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id=language, version=0, text=text
                )
            )
        )

    async def request(
        self, method: str, params: Any, msg_id: str | None = None, timeout: float | None = None
    ) -> Any:
        future = self.lsp.protocol.send_request_async(method, params, msg_id=msg_id)
        return await asyncio.wait_for(future, timeout)

    def cancel(self, msg_id: str) -> None:
        self.lsp.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.lsp.shutdown_async(None), 10)
        with contextlib.suppress(Exception):
            self.lsp.exit(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.lsp.stop(), 10)
        if self._drain is not None:
            self._drain.cancel()

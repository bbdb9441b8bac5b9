"""Starting a real `mlx-sidecar stdio` under pytest-lsp's client, typed: `config.start()` is
declared to return the plain JSON-RPC client, though the default factory makes the LSP one."""

from __future__ import annotations

from pytest_lsp import ClientServerConfig, LanguageClient


async def start_lsp(config: ClientServerConfig) -> LanguageClient:
    client = await config.start()
    assert isinstance(client, LanguageClient)
    return client

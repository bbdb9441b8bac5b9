"""Choosing a model for a role in the editor (`mlx/models/select`) moves the OpenAI port's
default with it in `stdio --http-port`, through the one shared `Roles`, and leaves the shared
Settings as configured."""

from __future__ import annotations

from pathlib import Path

import httpx

from sidecar.engine.engine import Engine
from sidecar.http.server import serve_http
from sidecar.lsp.session import SidecarServer
from sidecar.models.defaults import CHAT_MODEL
from sidecar.roles import Roles
from tests.tiny_models import tiny_fim_model


async def test_selected_role_is_shared_and_settings_stay(engine: Engine, models_dir: Path) -> None:
    tiny = tiny_fim_model(models_dir, "qwen")
    roles = Roles.from_settings(engine.settings)
    editor = SidecarServer(engine, engine.settings, roles)
    port = await serve_http(engine, "127.0.0.1", 0, roles=roles)
    try:
        editor.set_role("chat", tiny)
        assert engine.settings.chat_model == CHAT_MODEL  # the shared settings are not written
        assert roles["chat"] == tiny and editor.roles is roles
        async with httpx.AsyncClient(base_url=port.url, timeout=120) as http:
            reply = await http.post(
                "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
            )
        assert reply.status_code == 200, reply.text
        assert reply.json()["model"] == tiny  # a request naming no model gets the editor's
    finally:
        await port.stop()
        await engine.unload(tiny)

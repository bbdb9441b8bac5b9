"""`mlx/models/list|load|unload|select`: local models, what is in memory, the model per role."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field
from pygls.exceptions import JsonRpcInvalidParams

from sidecar.lsp import notify
from sidecar.lsp.errors import Params, parse, rpc_errors
from sidecar.lsp.options import Role
from sidecar.lsp.session import SidecarServer

KINDS_FOR_ROLE: dict[str, tuple[str, ...]] = {
    "completion": ("text",),
    "chat": ("text",),
    "embedding": ("embedding",),
}


class ModelParams(Params):
    model: str = Field(min_length=1)


class LoadParams(ModelParams):
    pin: bool | None = None


class SelectParams(ModelParams):
    role: Role


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def roles_of(ls: SidecarServer, model_id: str) -> list[str]:
    return [role for role, mid in ls.roles.items() if mid == model_id]


async def list_models(ls: SidecarServer, params: Any) -> dict[str, Any]:
    with rpc_errors():
        infos = await asyncio.to_thread(ls.engine.store.list)
    loaded = ls.engine.pool.models
    models = []
    for info in infos:
        entry = info.to_dict()
        entry["loaded"] = info.id in loaded
        entry["pinned"] = bool(info.id in loaded and loaded[info.id].pinned)
        entry["roles"] = roles_of(ls, info.id)
        models.append(entry)
    return {"models": models, "roles": dict(ls.roles)}


async def load(ls: SidecarServer, params: Any) -> dict[str, Any]:
    p = parse(LoadParams, params)
    with rpc_errors():
        loaded = await ls.engine.load(p.model, pin=p.pin)
    notify.models_changed(ls, "loaded", loaded.id)
    return loaded.to_dict()


async def unload(ls: SidecarServer, params: Any) -> dict[str, Any]:
    p = parse(ModelParams, params)
    with rpc_errors():
        model_id = await asyncio.to_thread(ls.engine.store.resolve_id, p.model)
        unloaded = await ls.engine.unload(model_id)
    if unloaded:
        notify.models_changed(ls, "unloaded", model_id)
    return {"model": model_id, "unloaded": bool(unloaded)}


async def select(ls: SidecarServer, params: Any) -> dict[str, Any]:
    """Make `model` serve `role`; it loads on first use."""
    p = parse(SelectParams, params)
    with rpc_errors():
        info = await asyncio.to_thread(ls.engine.store.info, p.model)
    if info.kind not in KINDS_FOR_ROLE[p.role]:
        needed = " or ".join(KINDS_FOR_ROLE[p.role])
        raise JsonRpcInvalidParams(
            f"model: {info.id!r} is {article(info.kind)} {info.kind} model; the {p.role} role "
            f"needs {article(needed)} {needed} model"
        )
    ls.set_role(p.role, info.id)
    notify.models_changed(ls, "selected", info.id)
    return {"role": p.role, "model": info.id, "roles": dict(ls.roles)}

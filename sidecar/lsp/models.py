"""`mlx/models/list|load|unload|select`: local models, what is in memory, the model per role.
Each change is followed by `mlx/models/changed` with the new list."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field
from pygls.exceptions import JsonRpcInvalidParams

from sidecar.errors import WrongModelKindError
from sidecar.lsp import notify
from sidecar.lsp.errors import Params, parse, rpc_errors, to_rpc
from sidecar.lsp.options import Role
from sidecar.lsp.session import SidecarServer
from sidecar.models.listing import local_models
from sidecar.wire import (
    LoadedModelStatus,
    ModelList,
    RoleModels,
    SelectResult,
    UnloadResult,
)

KINDS_FOR_ROLE: dict[str, tuple[str, ...]] = {
    "completion": ("text",),
    "chat": ("text", "vision"),  # a vision model chats too, and sees images (issue 14)
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


async def list_models(ls: SidecarServer, params: Any) -> ModelList:
    with rpc_errors():
        models = await local_models(ls.engine, ls.roles)
        remote = await ls.router.models()  # grouped by upstream, in the upstreams' order
    roles = RoleModels.model_validate(dict(ls.roles))
    return ModelList(models=models, roles=roles, remote=remote)


async def load(ls: SidecarServer, params: Any) -> LoadedModelStatus:
    p = parse(LoadParams, params)
    with rpc_errors():
        loaded = await ls.engine.load(p.model, pin=p.pin)
        await notify.models_changed(ls, "loaded", loaded.id)
    return LoadedModelStatus(**loaded.to_dict())


async def unload(ls: SidecarServer, params: Any) -> UnloadResult:
    p = parse(ModelParams, params)
    with rpc_errors():
        model_id = await asyncio.to_thread(ls.engine.store.resolve_id, p.model)
        unloaded = await ls.engine.unload(model_id)
        if unloaded:
            await notify.models_changed(ls, "unloaded", model_id)
    return UnloadResult(model=model_id, unloaded=bool(unloaded))


async def select(ls: SidecarServer, params: Any) -> SelectResult:
    """Make `model` serve `role`; it loads on first use."""
    p = parse(SelectParams, params)
    if ls.router.named(p.model) is not None:
        return select_remote(ls, p)
    with rpc_errors():
        info = await asyncio.to_thread(ls.engine.store.info, p.model)
    if info.kind not in KINDS_FOR_ROLE[p.role]:
        needed = " or ".join(KINDS_FOR_ROLE[p.role])
        raise to_rpc(
            WrongModelKindError(
                f"model: {info.id!r} is {article(info.kind)} {info.kind} model; the {p.role} "
                f"role needs {article(needed)} {needed} model"
            )
        )
    ls.set_role(p.role, info.id)
    with rpc_errors():
        await notify.models_changed(ls, "selected", info.id)
    return SelectResult(role=p.role, model=info.id, roles=RoleModels.model_validate(dict(ls.roles)))


def select_remote(ls: SidecarServer, p: SelectParams) -> SelectResult:
    """An upstream's model for chat or embeddings; inline completion stays local (its prompt
    reuse and cancellation per keystroke need the local engine)."""
    if p.role == "completion":
        raise JsonRpcInvalidParams(
            f"model: {p.model!r} is an upstream's model; inline completion runs on local models"
        )
    ls.set_role(p.role, p.model)
    return SelectResult(role=p.role, model=p.model, roles=RoleModels.model_validate(dict(ls.roles)))

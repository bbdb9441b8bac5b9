"""The local model list as the edges send it (`/v1/models`, `mlx/models/list`,
`mlx/models/changed`): each `ModelInfo` of the store as a `sidecar.wire.ModelEntry`, with
whether the pool holds it and which editor roles it serves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from sidecar.models.store import ModelInfo
from sidecar.roles import Role
from sidecar.wire import ModelEntry

if TYPE_CHECKING:
    from sidecar.engine.engine import Engine
    from sidecar.models.pool import LoadedModel


def model_entry(
    info: ModelInfo,
    loaded: Mapping[str, LoadedModel],
    roles: Mapping[Role, str] | None = None,
) -> ModelEntry:
    held = loaded.get(info.id)
    return ModelEntry(
        id=info.id,
        created=int(info.path.stat().st_mtime),
        kind=info.kind,
        path=str(info.path),
        source=info.source,  # type: ignore[arg-type]  # ModelInfo.source is one of the two
        size_bytes=info.size_bytes,
        quantization=info.quantization,
        fim=info.fim,
        loaded=held is not None,
        pinned=bool(held is not None and held.pinned),
        roles=[role for role, mid in (roles or {}).items() if mid == info.id],
    )


def model_entries(
    infos: Iterable[ModelInfo],
    loaded: Mapping[str, LoadedModel],
    roles: Mapping[Role, str] | None = None,
) -> list[ModelEntry]:
    return [model_entry(info, loaded, roles) for info in infos]


async def local_models(engine: Engine, roles: Mapping[Role, str] | None = None) -> list[ModelEntry]:
    """The local model list, read off the event loop (it walks the model directories)."""
    loaded = dict(engine.pool.models)  # a snapshot taken on the loop, which owns the pool
    return await asyncio.to_thread(lambda: model_entries(engine.store.list(), loaded, roles))

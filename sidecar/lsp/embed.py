"""`mlx/embed`: embedding vectors for a list of texts."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from sidecar import limits
from sidecar.lsp import upstreams
from sidecar.lsp.errors import Params, parse, rpc_errors
from sidecar.lsp.session import SidecarServer
from sidecar.wire import EmbedResult, Usage


class EmbedParams(Params):
    input: list[str] | str = Field(min_length=1)
    model: str | None = None

    @field_validator("input")
    @classmethod
    def bounded(cls, value: list[str] | str, info: ValidationInfo) -> list[str] | str:
        limits.check_embed_inputs([value] if isinstance(value, str) else value, limits.of(info))
        return value


async def embed(ls: SidecarServer, params: Any) -> EmbedResult:
    p = parse(EmbedParams, params, ls.engine.settings.limits)
    texts = [p.input] if isinstance(p.input, str) else p.input
    with rpc_errors():
        remote = await ls.router.route("embedding", p.model, ls.roles["embedding"])
    if remote is not None:
        return await upstreams.remote_embed(ls, remote, texts)
    with rpc_errors():
        result = await ls.engine.embed(texts, p.model or ls.roles["embedding"])
    return EmbedResult(
        data=result.vectors, model=result.model, usage=Usage.of(result.prompt_tokens)
    )

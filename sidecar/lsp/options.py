"""Typed initialization options and settings the editor sends (camelCase or snake_case keys).

    initializationOptions = {
      "models": {"completion": "...", "chat": "...", "embedding": "..."},
      "httpPort": 8080,            (0 or absent: no OpenAI port)
      "completion": {"maxTokens": 48, "prefixTokens": 1024, "suffixTokens": 256, ...}
    }

`workspace/didChangeConfiguration` takes the same shape, bare or under an `mlxSidecar` key.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from sidecar.completion.options import CompletionOptions
from sidecar.config import Settings
from sidecar.roles import Role, Roles

SETTINGS_SECTIONS = ("mlxSidecar", "mlx-sidecar", "mlx_sidecar", "mlx")


class Options(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ModelRoles(Options):
    """The model serving each role; None means the settings' default."""

    completion: str | None = None
    chat: str | None = None
    embedding: str | None = None


class InitOptions(Options):
    models: ModelRoles = Field(default_factory=ModelRoles)
    http_port: int | None = Field(default=None, ge=0, le=65535)
    completion: CompletionOptions = Field(default_factory=CompletionOptions)


def settings_section(settings: Any) -> dict[str, Any]:
    """The sidecar's part of a didChangeConfiguration payload."""
    if not isinstance(settings, dict):
        return {}
    for key in SETTINGS_SECTIONS:
        if isinstance(settings.get(key), dict):
            return settings[key]
    return settings


def merged(current: InitOptions, update: dict[str, Any]) -> InitOptions:
    """`current` with the keys present in `update` replaced (nested sections merged)."""
    data = current.model_dump()
    patch = InitOptions.model_validate(update).model_dump(exclude_unset=True)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return InitOptions.model_validate(data)


def default_roles(settings: Settings) -> dict[Role, str]:
    return dict(Roles.from_settings(settings))

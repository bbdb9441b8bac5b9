"""Which model serves each role (completion, chat, embedding) in this process right now.

It starts as the configured models (`Settings.*_model`) and changes when the editor picks another
(`mlx/models/select`, or its settings). The command line makes one and hands it to both edges, so
the OpenAI port's defaults follow the editor's choice without anyone writing into the shared
`Settings`, which stay what the user configured.
"""

from __future__ import annotations

from sidecar.config import Settings

ROLES = ("completion", "chat", "embedding")


class ModelRoles(dict[str, str]):
    """role -> model id; a plain dict so the edges can read, copy and report it as one."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRoles:
        return cls({role: getattr(settings, f"{role}_model") for role in ROLES})

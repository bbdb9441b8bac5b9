"""Which model serves each role (completion, chat, embedding) in this process right now.

It starts as the configured models (`Settings.*_model`) and changes when the editor picks another
(`mlx/models/select`, or its settings). The command line makes one and hands it to both edges, so
the OpenAI port's defaults follow the editor's choice without anyone writing into the shared
`Settings`, which stay what the user configured.
"""

from __future__ import annotations

from typing import Literal

from sidecar.config import Settings

Role = Literal["completion", "chat", "embedding"]
ROLES: tuple[Role, ...] = ("completion", "chat", "embedding")


class Roles(dict[Role, str]):
    """role -> model id; a plain dict so the edges can read, copy and report it as one."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Roles:
        return cls(
            completion=settings.completion_model,
            chat=settings.chat_model,
            embedding=settings.embedding_model,
        )

"""One served request, as the usage ledger records it, and the callable that takes it.

The local engine and the upstream router both report through a `UsageSink`, so the ledger
(`sidecar.usage.store`) and whatever else listens never depend on who served the request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Endpoint = Literal["chat", "completion", "embedding"]


@dataclass(frozen=True)
class UsageEvent:
    model: str  # the model id as the client named it (local id, or "UPSTREAM/MODEL")
    endpoint: Endpoint
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: bool = False
    upstream: str | None = None  # None: served by the local engine
    at: float | None = field(default=None)  # unix time; None: when recorded


UsageSink = Callable[[UsageEvent], None]


def discard(event: UsageEvent) -> None:
    """The sink when nothing records usage."""

"""The prompt of a plain chat turn, as the engine's one chat turn renders it."""

from __future__ import annotations

from typing import Any

from sidecar.engine.chat import plan_chat


async def chat_prompt(
    engine: Any, messages: list[dict[str, Any]], model: str | None = None
) -> list[int] | str:
    return (await plan_chat(engine, messages, model, None)).prompt

"""Prompts the tests share: a plain chat turn as the engine's one chat turn renders it, and code
that repeats (what prompt-lookup drafts are copied from)."""

from __future__ import annotations

from typing import Any

from sidecar.engine.chat import plan_chat


async def chat_prompt(
    engine: Any, messages: list[dict[str, Any]], model: str | None = None
) -> list[int] | str:
    return (await plan_chat(engine, messages, model, None)).prompt


# A second function like the first: its body repeats the first's, token for token.
REPEATING_CODE = """def total_price(items):
    total = 0
    for item in items:
        if item.price > 0:
            total += item.price * item.quantity
    return total


def total_weight(items):
    total = 0
    for item in items:
"""

"""Partial-word healing on the HTTP edge: `/v1/completions` with `suffix` cuts the word being
typed (or a new line's indentation) off the prompt, as the editor's path does
(`sidecar.completion.prompt.heal`), and this removes it again from what the model writes.

Why: a prompt that ends mid-word, or part way into a line's indentation, tokenizes unlike any
training text; the Qwen coder then drops or adds a space (tests/test_fim_real.py). The model
writes the cut text itself; an answer that does not start with it is no answer (it ends empty,
and its generation is stopped at once).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from sidecar.engine.engine import Event
from sidecar.engine.requests import Delta, Result


async def healed_events(
    events: AsyncIterator[Event], healed: str, cancel: Callable[[], object]
) -> AsyncIterator[Event]:
    """`events` of a generation whose prompt had `healed` cut from its end, with `healed`
    taken off the front of its text. Text is held back until it covers `healed`; text that does
    not start with it is refused: `cancel` stops the generation and its result is empty."""
    held = ""
    passing = refused = False
    try:
        async for event in events:
            if isinstance(event, Result):
                yield _result(event, healed, refused)
                continue
            if passing:
                yield event
                continue
            if refused:
                continue
            held += event.text
            if len(held) < len(healed):
                if not healed.startswith(held):
                    refused = True
                    cancel()
                continue
            if not held.startswith(healed):
                refused = True
                cancel()
                continue
            passing = True
            if rest := held[len(healed) :]:
                yield Delta(event.request_id, rest)
    finally:
        await events.aclose()  # type: ignore[attr-defined]


def _result(result: Result, healed: str, refused: bool) -> Result:
    if result.error is not None:
        return result
    if refused or not result.text.startswith(healed):
        return replace(result, text="", finish_reason="stop")
    return replace(result, text=result.text[len(healed) :])

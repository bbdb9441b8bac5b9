"""The prompt for one inline completion: the buffer around the cursor cut to token budgets,
cross-file chunks, and the template for the model's FIM family (or the no-FIM fallback)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sidecar.completion.fim import (
    ExtraFiles,
    build_fim_prompt,
    fim_chat_messages,
    fim_stop_tokens,
    has_fim,
)
from sidecar.engine.messages import render_chat

CountTokens = Callable[[str], int]
Fallback = Literal["chat", "prefix"]
CHARS_PER_TOKEN_MAX = 8  # a cheap first cut before counting tokens line by line


@dataclass
class CompletionPrompt:
    prompt: str | list[int]
    prefix: str  # the prefix and suffix the prompt holds (after budgets)
    suffix: str
    chat: bool  # made with the chat-style fallback: its answers need more cleaning
    stop: list[str] = field(default_factory=list)
    # Text cut from the end of the prompt (a partial word, see `heal`): the answer must
    # start with it, and it is removed from the answer.
    healed: str = ""

    def answer(self, generated: str) -> str | None:
        """The model's text after the cursor, or None when it does not start with `healed`."""
        if not generated.startswith(self.healed):
            return None
        return generated[len(self.healed) :]


PARTIAL_WORD = re.compile(r" ?[A-Za-z0-9_]{0,48}$")


def heal(prefix: str) -> tuple[str, str]:
    """Split the partial word being typed (and one space before it) off the prefix.

    A prompt ending mid-word tokenizes unlike any training text (`tota` is `tot`+`a`), and the
    model answers as if the word were complete; ending at the word boundary and requiring the
    answer to start with the typed characters gives the model its natural tokens back.
    """
    match = PARTIAL_WORD.search(prefix)
    cut = match.group(0) if match else ""
    if not cut or len(cut) == len(prefix):
        return prefix, ""
    return prefix[: len(prefix) - len(cut)], cut


def trim_prefix(prefix: str, budget: int, count: CountTokens) -> str:
    """The end of `prefix` within `budget` tokens, in whole lines (the cursor's line always)."""
    text = prefix[-budget * CHARS_PER_TOKEN_MAX :]
    lines = text.split("\n")
    if len(text) < len(prefix) and len(lines) > 1:
        lines = lines[1:]  # cut mid-line by the character cap
    kept = [lines[-1]]
    used = count(lines[-1]) if lines[-1] else 0
    for line in reversed(lines[:-1]):
        used += count(line + "\n")
        if used > budget:
            break
        kept.append(line)
    return "\n".join(reversed(kept))


def trim_suffix(suffix: str, budget: int, count: CountTokens) -> str:
    """The start of `suffix` within `budget` tokens, in whole lines (the cursor's line always)."""
    if budget <= 0:
        return suffix.split("\n", 1)[0]
    text = suffix[: budget * CHARS_PER_TOKEN_MAX]
    lines = text.split("\n")
    if len(text) < len(suffix) and len(lines) > 1:
        lines = lines[:-1]  # cut mid-line by the character cap
    kept = [lines[0]]
    used = count(lines[0]) if lines[0] else 0
    for line in lines[1:]:
        used += count("\n" + line)
        if used > budget:
            break
        kept.append(line)
    return "\n".join(kept)


def token_counter(tokenizer: Any) -> CountTokens:
    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False)) if text else 0

    return count


def build_completion_prompt(
    tokenizer: Any,
    family: str | None,
    prefix: str,
    suffix: str,
    *,
    prefix_tokens: int,
    suffix_tokens: int,
    extra_files: ExtraFiles | None = None,
    fallback: Fallback = "prefix",
    path: str | None = None,
) -> CompletionPrompt:
    """Everything but running the model. `tokenizer` is the completion model's tokenizer."""
    count = token_counter(tokenizer)
    prefix = trim_prefix(prefix, prefix_tokens, count)
    suffix = trim_suffix(suffix, suffix_tokens, count)
    if has_fim(family):
        head, healed = heal(prefix)
        text = build_fim_prompt(family, head, suffix, extra_files, path=path)
        stop = fim_stop_tokens(family)
        return CompletionPrompt(text, prefix, suffix, chat=False, stop=stop, healed=healed)
    if fallback == "chat" and getattr(tokenizer, "chat_template", None):
        messages = fim_chat_messages(prefix, suffix, extra_files, path=path)
        return CompletionPrompt(render_chat(tokenizer, messages), prefix, suffix, chat=True)
    head, healed = heal(prefix)
    text = build_fim_prompt(None, head, suffix, extra_files)
    return CompletionPrompt(text, prefix, suffix, chat=False, healed=healed)

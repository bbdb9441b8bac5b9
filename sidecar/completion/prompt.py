"""The prompt for one inline completion: the buffer around the cursor cut to token budgets,
cross-file chunks, and the template for the model's FIM family (or the no-FIM fallback), as
token ids laid out so that consecutive keystrokes share the longest token prefix:

- the prefix window starts on a block boundary (a multiple of `PREFIX_BLOCK_LINES` lines from
  the top of the file), so it moves once per block of lines typed, not on every line;
- the parts are tokenized one by one (`sidecar.completion.fim`), so a part's tokens do not
  depend on what follows it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any, Literal

from sidecar.completion.fim import (
    ExtraFiles,
    FimParts,
    Order,
    fim_chat_messages,
    fim_parts,
    fim_stop_tokens,
    has_fim,
)
from sidecar.engine.messages import render_chat

CountTokens = Callable[[str], int]
Fallback = Literal["chat", "prefix"]
CHARS_PER_TOKEN_MAX = 8  # a cheap first cut before counting tokens line by line
# Moving the window's start costs a prefill of the whole window; 8 lines is a step a typist
# takes a minute or more to make, while the window keeps at least budget - 8 lines of text.
PREFIX_BLOCK_LINES = 8


@dataclass
class CompletionPrompt:
    prompt: str | list[int]  # token ids (a rendered chat string for the chat fallback)
    prefix: str  # the prefix and suffix the prompt holds (after budgets)
    suffix: str
    chat: bool  # made with the chat-style fallback: its answers need more cleaning
    stop: list[str] = field(default_factory=list)
    # Text cut from the end of the prompt (a partial word, see `heal`): the answer must
    # start with it, and it is removed from the answer.
    healed: str = ""
    head_tokens: int = 0  # how many leading ids are the head (other files): the warm-up's part
    text: str = ""  # the prompt as one string (what the ids spell)

    def answer(self, generated: str) -> str | None:
        """The model's text after the cursor, or None when it does not start with `healed`."""
        if not generated.startswith(self.healed):
            return None
        return generated[len(self.healed) :]


# \Z, not $: `$` also matches before a final newline, which cut "0\n" off a prefix ending "= 0\n".
# A word being typed, one space after a word, or a new line's whole indentation (the model
# writes a line's indentation itself far more reliably than it continues one: given part of it,
# the Qwen coder drops or adds a space, tests/test_fim_real.py).
PARTIAL_WORD = re.compile(
    r"(?:(?<=\n)|\A)[ \t]{1,64}\Z"  # a new line's indentation, whole
    r"| ?[A-Za-z0-9_]{1,48}\Z"  # a word after other text, with the space before it
    r"|(?<=\S) \Z"  # one space after a word
)


def heal(prefix: str) -> tuple[str, str]:
    """Split the partial word being typed (and one space before it) off the prefix.

    A prompt ending mid-word tokenizes unlike any training text (`tota` is `tot`+`a`), and the
    model answers as if the word were complete; ending at the word boundary and requiring the
    answer to start with the typed characters gives the model its natural tokens back. (It also
    keeps the prompt unchanged while a word is typed: a cache hit for the KV.)
    """
    match = PARTIAL_WORD.search(prefix)
    cut = match.group(0) if match else ""
    if not cut or len(cut) == len(prefix):
        return prefix, ""
    return prefix[: len(prefix) - len(cut)], cut


def trim_prefix(
    prefix: str, budget: int, count: CountTokens, block: int = PREFIX_BLOCK_LINES
) -> str:
    """The end of `prefix` within `budget` tokens, in whole lines (the cursor's line always),
    starting on a line whose number in the file is a multiple of `block` when one fits."""
    text = prefix[-budget * CHARS_PER_TOKEN_MAX :]
    lines = text.split("\n")
    if len(text) < len(prefix) and len(lines) > 1:
        lines = lines[1:]  # cut mid-line by the character cap
    first_line = prefix.count("\n") - (len(lines) - 1)  # file line number of lines[0]
    kept = 1  # lines kept, from the end
    used = count(lines[-1]) if lines[-1] else 0
    for line in reversed(lines[:-1]):
        used += count(line + "\n")
        if used > budget:
            break
        kept += 1
    start = first_line + len(lines) - kept  # the earliest line that fits
    snapped = -(-start // block) * block  # the next block boundary
    cursor_line = first_line + len(lines) - 1
    if snapped <= cursor_line:
        kept = cursor_line - snapped + 1
    return "\n".join(lines[-kept:])


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


def encode_parts(tokenizer: Any, parts: list[str]) -> tuple[list[int], list[int]]:
    """Ids of each part, concatenated; and where each part ends. The first part gets what the
    tokenizer adds at the start (BOS, where it adds one); markers in the text are control
    tokens (FIM prompts rely on it, as `sidecar.engine.messages.encode` does)."""
    ids: list[int] = []
    ends: list[int] = []
    for i, part in enumerate(parts):
        if part or i == 0:
            ids += list(tokenizer.encode(part, add_special_tokens=(i == 0)))
        ends.append(len(ids))
    return ids, ends


def vocab_of(tokenizer: Any) -> Container[str] | None:
    get = getattr(tokenizer, "get_vocab", None)
    return get() if callable(get) else None


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
    repo: str | None = None,
    vocab: Container[str] | None = None,
    order: Order | None = None,
) -> CompletionPrompt:
    """Everything but running the model. `tokenizer` is the completion model's tokenizer;
    `vocab` its vocabulary (looked up when not given: pass it to save the lookup)."""
    count = token_counter(tokenizer)
    prefix = trim_prefix(prefix, prefix_tokens, count)
    suffix = trim_suffix(suffix, suffix_tokens, count)
    if not has_fim(family) and fallback == "chat" and getattr(tokenizer, "chat_template", None):
        messages = fim_chat_messages(prefix, suffix, extra_files, path=path)
        return CompletionPrompt(render_chat(tokenizer, messages), prefix, suffix, chat=True)
    head, healed = heal(prefix)
    if has_fim(family):
        if vocab is None:
            vocab = vocab_of(tokenizer)
        parts = fim_parts(family, head, suffix, extra_files, repo, path, vocab, order)
        stop = fim_stop_tokens(family)
    else:
        parts = fim_parts(None, head, suffix, extra_files)
        stop = []
    return prompt_of(tokenizer, parts, prefix, suffix, stop, healed)


def prompt_of(
    tokenizer: Any, parts: FimParts, prefix: str, suffix: str, stop: list[str], healed: str
) -> CompletionPrompt:
    ids, ends = encode_parts(tokenizer, parts.head + parts.body)
    head_tokens = ends[len(parts.head) - 1] if parts.head else 0
    return CompletionPrompt(
        ids, prefix, suffix, False, stop, healed, head_tokens=head_tokens, text=parts.text
    )

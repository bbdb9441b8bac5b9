"""Turn a model's raw fill-in-the-middle answer into ghost text the editor can show.

Rules, in order: strip chat noise (fences, the echoed line), single line when code follows the
cursor on its line, stop where the answer runs into the suffix, stop before a line that repeats
the next line of the file, stop when a line dedents out of the cursor's block, drop unmatched
closing brackets, trim trailing whitespace.
"""

from __future__ import annotations

import re

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {v: k for k, v in OPENERS.items()}
FENCE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|$)", re.DOTALL)
MIN_OVERLAP = 1


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def strip_fences(text: str) -> str:
    """The code inside the first markdown fence, or the text unchanged."""
    if "```" not in text:
        return text
    match = FENCE.search(text)
    return match.group(1) if match else text.replace("```", "")


def strip_echo(text: str, line_prefix: str) -> str:
    """Chat models often restate the line they were given: drop that restatement (and, on a
    blank line, the indentation the editor already has)."""
    if not text:
        return text
    stripped = line_prefix.strip()
    if stripped:
        for candidate in (line_prefix, line_prefix.lstrip()):
            if text.startswith(candidate):
                return text[len(candidate) :]
        return text
    # Cursor in the leading whitespace: the answer's own indentation replaces what is typed.
    lead = indent_of(text.split("\n", 1)[0])
    return text[min(lead, len(line_prefix)) :]


def unclosed_brackets(code: str) -> list[str]:
    """Opening brackets still open at the end of `code` (strings and # comments skipped)."""
    stack: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(code):
        c = code[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if code.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
            if c == "\n" and len(quote) == 1:
                quote = None
        elif c in "\"'":
            quote = code[i : i + 3] if code[i : i + 3] in ('"""', "'''") else c
            i += len(quote)
            continue
        elif c == "#":
            end = code.find("\n", i)
            i = len(code) if end < 0 else end
            continue
        elif c in OPENERS:
            stack.append(c)
        elif c in CLOSERS and stack and stack[-1] == CLOSERS[c]:
            stack.pop()
        i += 1
    return stack


def cut_unmatched_closer(text: str, open_before: list[str]) -> str:
    """Cut the answer at the first closing bracket that matches nothing open (in the prefix's
    current statement or the answer itself)."""
    stack = list(open_before)
    quote: str | None = None
    for i, c in enumerate(text):
        if quote:
            if c == quote or c == "\n":
                quote = None
            continue
        if c in "\"'":
            quote = c
        elif c in OPENERS:
            stack.append(c)
        elif c in CLOSERS:
            if not stack or stack[-1] != CLOSERS[c]:
                return text[:i]
            stack.pop()
    return text


def cut_suffix_overlap(text: str, suffix_line: str) -> str:
    """On a single line, drop the tail of the answer that the text after the cursor repeats
    (the model wrote `x)` and `)` already follows)."""
    rest = suffix_line.rstrip()
    if not rest.strip():
        return text
    for n in range(min(len(text), len(rest)), MIN_OVERLAP - 1, -1):
        if n and text.endswith(rest[:n]):
            return text[: len(text) - n]
    return text


def cut_repeated_lines(text: str, suffix: str) -> str:
    """Stop before the first answer line that repeats the next non-blank line of the file."""
    following = next((ln.strip() for ln in suffix.split("\n")[1:] if ln.strip()), None)
    first_after_cursor = suffix.split("\n", 1)[0].strip()
    targets = {t for t in (following, first_after_cursor) if t}
    if not targets:
        return text
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if i and line.strip() in targets:
            return "\n".join(lines[:i])
    return text


def cut_dedent(text: str, prefix: str) -> str:
    """Stop at the first later line indented less than the block being written (the answer ran
    out of it, e.g. into the next function). The block is the cursor line's, or, when the
    answer starts on a new line (or on a blank one, indented), that line's."""
    lines = text.split("\n")
    if lines[0].strip():
        line_prefix = prefix.rsplit("\n", 1)[-1]
        if line_prefix.strip():
            block = indent_of(line_prefix)
        else:  # a blank line: the indentation typed so far, or what the answer indents itself
            block = max(len(line_prefix), indent_of(lines[0]))
    else:
        first = next((ln for ln in lines[1:] if ln.strip()), "")
        block = indent_of(first)
    if block == 0:
        return text
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() and indent_of(line) < block:
            return "\n".join(lines[:i])
    return text


def leading_closers(suffix_line: str) -> int:
    """How many closing brackets the text after the cursor starts with (they close brackets
    the prefix opened, so the answer must not close them again)."""
    n = 0
    for c in suffix_line.lstrip():
        if c not in CLOSERS:
            break
        n += 1
    return n


def postprocess(text: str, prefix: str, suffix: str, chat: bool = False) -> str:
    """Ghost text for the cursor between `prefix` and `suffix`; "" when nothing useful is left.

    `chat` marks answers from the chat-style fallback (fences and echoed lines possible)."""
    line_prefix = prefix.rsplit("\n", 1)[-1]
    suffix_line = suffix.split("\n", 1)[0]
    if chat:
        text = strip_echo(strip_fences(text), line_prefix)
    text = text.replace("\r\n", "\n")
    mid_line = bool(suffix_line.strip())
    if mid_line:
        text = text.split("\n", 1)[0]
        text = cut_suffix_overlap(text, suffix_line)
    else:
        text = cut_repeated_lines(text, suffix)
        text = cut_dedent(text, prefix)
    open_before = unclosed_brackets("\n".join(prefix.split("\n")[-30:]))
    if mid_line:
        open_before = open_before[: max(0, len(open_before) - leading_closers(suffix_line))]
    text = cut_unmatched_closer(text, open_before)
    text = text.rstrip()
    if not text.strip():
        return ""
    return text

"""The one chat renderer: messages -> prompt token ids with the model's chat template.

Users' text is data, never control: a message that contains `<|im_end|>\\n<|im_start|>system`
must not close its turn and open a system turn. So contents (and names) are swapped for
sentinels, the template is rendered as text, and the pieces are encoded separately: the
template's own text with special tokens recognised, the users' text with special tokens split
into ordinary text tokens."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any, Literal

from sidecar.errors import EngineError

# The roles a message may have, at every edge (HTTP and JSON-RPC): OpenAI's set.
MessageRole = Literal["system", "developer", "user", "assistant", "tool"]

# Private-use characters: no tokenizer normalises them away and no template trims them.
SENTINEL = "\ue000{nonce}:{index}\ue001"
UNTRUSTED_KEYS = ("content", "name", "tool_call_id", "reasoning_content")


def template_role(role: str) -> str:
    """Chat templates know no 'developer' (OpenAI's newer name for system)."""
    return "system" if role == "developer" else role


def encode(tokenizer: Any, text: str) -> list[int]:
    """Raw prompt -> ids, with BOS only where the tokenizer adds one itself. Special-token
    text is parsed as control tokens: raw completion prompts (and FIM prompts) rely on it."""
    ids = tokenizer.encode(text)
    return list(ids)


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """User text -> ids, where `<|im_end|>` and friends are plain characters."""
    if not text:
        return []
    return list(tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))


def added_tokens(tokenizer: Any) -> dict[str, int]:
    """The tokenizer's added tokens (the template's markers among them): text -> id."""
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    return {str(getattr(tok, "content", tok)): int(i) for i, tok in decoder.items()}


def with_sentinels(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, str], re.Pattern[str]]:
    """Messages whose untrusted strings are sentinels; the sentinel -> text map; its pattern."""
    nonce = secrets.token_hex(4)
    texts: dict[str, str] = {}
    masked = []
    for message in messages:
        out = dict(message)
        for key in UNTRUSTED_KEYS:
            value = out.get(key)
            if isinstance(value, str) and value:
                sentinel = SENTINEL.format(nonce=nonce, index=len(texts))
                texts[sentinel] = value
                out[key] = sentinel
        masked.append(out)
    pattern = re.compile("(" + re.escape("\ue000" + nonce) + r":\d+\ue001)")
    return masked, texts, pattern


def encode_rendered(
    tokenizer: Any, rendered: str, texts: dict[str, str], pattern: re.Pattern[str]
) -> list[int]:
    """Template markers -> their ids; everything between two markers (template text and users'
    text together, as the tokenizer would see it in one string) -> ids with special tokens
    split, so the BPE merges across a content's edges are the ones a whole-string encode
    makes, and nothing a user typed becomes a control token."""
    markers = added_tokens(tokenizer)
    split = (
        re.compile(
            "(" + "|".join(re.escape(m) for m in sorted(markers, key=len, reverse=True)) + ")"
        )
        if markers
        else None
    )
    ids: list[int] = []
    run: list[str] = []
    for i, piece in enumerate(pattern.split(rendered)):
        if i % 2:  # re.split puts the captured sentinels at odd indices
            run.append(texts[piece])
            continue
        for j, part in enumerate(split.split(piece) if split else [piece]):
            if j % 2:
                ids += encode_text(tokenizer, "".join(run)) + [markers[part]]
                run = []
            else:
                run.append(part)
    return ids + encode_text(tokenizer, "".join(run))


def check_no_markers(tokenizer: Any, what: str, value: Any) -> None:
    """Tool definitions and earlier calls' arguments go to the template as structures (it
    prints them with `tojson`, so they cannot be swapped for sentinels like contents): text in
    them that spells one of the template's control tokens is refused instead."""
    if value is None:
        return
    text = json.dumps(value, ensure_ascii=False)
    found = next((m for m in added_tokens(tokenizer) if len(m) > 1 and m in text), None)
    if found is not None:
        raise EngineError(f"{what} contain {found!r}, a control token of the model's template")


def render_chat(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> list[int]:
    """Messages (string contents) -> prompt ids ending where the assistant's turn starts.
    `tools` (OpenAI tool definitions) go to a template that renders them."""
    if not messages:
        raise EngineError("messages must not be empty")
    check_no_markers(tokenizer, "tools", tools)
    check_no_markers(tokenizer, "tool calls", [m.get("tool_calls") for m in messages])
    masked, texts, pattern = with_sentinels(messages)
    if getattr(tokenizer, "chat_template", None) is None:
        text = "".join(f"{m['role']}: {m.get('content') or ''}\n" for m in masked) + "assistant:"
        # BOS (or nothing) as the tokenizer adds it to a raw prompt
        return encode(tokenizer, "") + encode_rendered(tokenizer, text, texts, pattern)
    try:
        extra = {"tools": tools} if tools else {}
        rendered = tokenizer.apply_chat_template(
            masked, add_generation_prompt=True, tokenize=False, **extra
        )
    except Exception as e:
        raise EngineError(f"the model's chat template rejected the messages: {e}") from e
    return encode_rendered(tokenizer, rendered, texts, pattern)

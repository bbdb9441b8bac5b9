"""`@workspace` in a chat: the last user message names it, so the chunks retrieved for its
question go into that message, best first, within a token budget; the reply lists them.

The excerpts go into the user message rather than a system message: small local models follow
what is in the turn they answer far more than a system prompt.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sidecar.workspace.retrieval import Hit, Mode

TAG = re.compile(r"(?<![\w@])@workspace\b", re.IGNORECASE)
HEADER = "Excerpts from the workspace, most relevant first:"
QUESTION = "Using the excerpts above, answer:"


@dataclass(frozen=True)
class Used:
    path: str
    start_line: int
    end_line: int


def mentions_workspace(messages: list[dict[str, Any]]) -> bool:
    last = last_user(messages)
    if last is None or not isinstance(content := messages[last]["content"], str):
        return False  # content parts (images) are left alone
    return TAG.search(content) is not None


def last_user(messages: list[dict[str, Any]]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "user":
            return i
    return None


def question_of(text: str) -> str:
    return " ".join(TAG.sub(" ", text).split())


def excerpt(hit: Hit) -> str:
    return f"--- {hit.path} (lines {hit.start_line}-{hit.end_line})\n{hit.text}\n"


async def augment(
    messages: list[dict[str, Any]],
    search: Callable[[str, int, Mode], Awaitable[list[Hit]]],
    count_tokens: Callable[[str], Awaitable[int]],
    budget_tokens: int,
    max_chunks: int,
    mode: Mode,
) -> tuple[list[dict[str, Any]], list[Used]]:
    """`messages` with the last user message's question preceded by the retrieved excerpts that
    fit in `budget_tokens` (a chunk that does not fit is skipped, a smaller later one may), and
    the chunks used."""
    last = last_user(messages)
    assert last is not None
    question = question_of(messages[last]["content"]) or messages[last]["content"]
    hits = await search(question, max_chunks, mode)
    picked: list[Hit] = []
    left = budget_tokens
    for hit in hits:
        cost = await count_tokens(excerpt(hit))
        if cost <= left:
            picked.append(hit)
            left -= cost
    if not picked:
        return [
            *messages[:last],
            {**messages[last], "content": question},
            *messages[last + 1 :],
        ], []
    body = "\n".join(excerpt(h) for h in picked)
    content = f"{HEADER}\n\n{body}\n{QUESTION} {question}"
    out = [*messages[:last], {**messages[last], "content": content}, *messages[last + 1 :]]
    return out, [Used(h.path, h.start_line, h.end_line) for h in picked]

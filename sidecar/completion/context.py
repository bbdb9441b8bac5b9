"""Cross-file context for completions: a bounded ring of chunks from other open buffers,
recently edited places and recently viewed ranges (the idea of llama.vscode's extra context),
newest last; and the picks a session keeps stable from one keystroke to the next."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sidecar.completion.fim import ExtraFiles

HEADER_TOKENS = 8  # about what a path header line costs


@dataclass(frozen=True)
class Chunk:
    uri: str
    start_line: int
    text: str


def uri_path(uri: str) -> str:
    """A short display path for a document URI (its last two path components)."""
    path = uri.split("://", 1)[-1]
    parts = [p for p in path.split("/") if p]
    return "/".join(parts[-2:]) if parts else uri


class ContextRing:
    """Chunks of `chunk_lines` lines, at most `capacity`, newest last. A chunk that overlaps a
    newer one from the same document is replaced by it; identical text is kept once."""

    def __init__(self, capacity: int = 16, chunk_lines: int = 16) -> None:
        self.capacity = capacity
        self.chunk_lines = chunk_lines
        self.chunks: list[Chunk] = []
        self.version = 0  # moves on every change, so callers can tell the ring changed

    def note(self, uri: str, text: str, line: int) -> None:
        """Remember the lines around `line` of a document (an edit, a newly opened buffer, a
        viewed range's middle)."""
        if self.capacity <= 0:
            return
        lines = text.split("\n")
        start = max(0, min(line - self.chunk_lines // 2, len(lines) - self.chunk_lines))
        body = "\n".join(lines[start : start + self.chunk_lines])
        if not body.strip():
            return
        if self.chunks and self.chunks[-1] == Chunk(uri, start, body):
            return  # the same chunk again (a keystroke that changed another line's chunk)
        kept = [
            c
            for c in self.chunks
            if c.text != body
            and not (c.uri == uri and abs(c.start_line - start) < self.chunk_lines)
        ]
        kept.append(Chunk(uri, start, body))
        self.chunks = kept[-self.capacity :]
        self.version += 1

    def forget(self, uri: str) -> None:
        kept = [c for c in self.chunks if c.uri != uri]
        if len(kept) != len(self.chunks):
            self.chunks = kept
            self.version += 1

    def pick(self, uri: str, budget_tokens: int, count_tokens: Callable[[str], int]) -> list[Chunk]:
        """Chunks from documents other than `uri`, newest first, within `budget_tokens`;
        returned oldest first so the newest sits nearest the cursor in the prompt."""
        picked: list[Chunk] = []
        left = budget_tokens
        for chunk in reversed(self.chunks):
            if chunk.uri == uri:
                continue
            cost = count_tokens(chunk.text) + HEADER_TOKENS
            if cost > left:
                continue
            left -= cost
            picked.append(chunk)
        return list(reversed(picked))


def sticky(previous: list[Chunk], fresh: list[Chunk]) -> list[Chunk]:
    """`fresh`'s chunks in the order they were first picked: the ones kept from `previous`
    first, in their old places, new ones after them. The prompt's head then keeps its token
    prefix (and its KV) up to the first chunk that really left."""
    now = set(fresh)
    kept = [c for c in previous if c in now]
    return kept + [c for c in fresh if c not in set(kept)]


def as_files(chunks: list[Chunk]) -> ExtraFiles:
    return [(uri_path(c.uri), c.text) for c in chunks]

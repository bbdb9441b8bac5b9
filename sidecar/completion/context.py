"""Cross-file context for completions: a bounded ring of chunks from other open buffers and
recently edited places (the idea of llama.vscode's extra context), newest first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sidecar.completion.fim import ExtraFiles


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

    def __init__(self, capacity: int = 16, chunk_lines: int = 24) -> None:
        self.capacity = capacity
        self.chunk_lines = chunk_lines
        self.chunks: list[Chunk] = []

    def note(self, uri: str, text: str, line: int) -> None:
        """Remember the lines around `line` of a document (an edit or a newly opened buffer)."""
        if self.capacity <= 0:
            return
        lines = text.split("\n")
        start = max(0, min(line - self.chunk_lines // 2, len(lines) - self.chunk_lines))
        body = "\n".join(lines[start : start + self.chunk_lines])
        if not body.strip():
            return
        kept = [
            c
            for c in self.chunks
            if c.text != body
            and not (c.uri == uri and abs(c.start_line - start) < self.chunk_lines)
        ]
        kept.append(Chunk(uri, start, body))
        self.chunks = kept[-self.capacity :]

    def forget(self, uri: str) -> None:
        self.chunks = [c for c in self.chunks if c.uri != uri]

    def pick(self, uri: str, budget_tokens: int, count_tokens: Callable[[str], int]) -> ExtraFiles:
        """Chunks from documents other than `uri`, newest first, within `budget_tokens`;
        returned oldest first so the newest sits nearest the cursor in the prompt."""
        picked: ExtraFiles = []
        left = budget_tokens
        for chunk in reversed(self.chunks):
            if chunk.uri == uri:
                continue
            cost = count_tokens(chunk.text) + 8  # + the path header
            if cost > left:
                continue
            left -= cost
            picked.append((uri_path(chunk.uri), chunk.text))
        return list(reversed(picked))

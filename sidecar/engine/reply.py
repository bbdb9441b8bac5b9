"""A chat reply's text split, as it streams, into content, reasoning and tool calls.

The engine streams text; a reply holds three things a client wants apart: the answer (`content`),
the model's thinking (`<think>…</think>`, Qwen3 / DeepSeek-R1 style) and tool calls (the family's
markup, e.g. `<tool_call>{…}</tool_call>`, parsed by mlx_lm's `tool_parsers`). mlx_lm.server
splits on token ids inside its own generation loop (its state machine is not callable from
outside it); the sidecar's engine hands the edges text, so this splits text. Text that might be
the start of a marker is held back until it is clearly not one, so no markup ever reaches
`content`, whatever the chunking.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

ToolParser = Callable[[str, Any], Any]  # mlx_lm.tool_parsers.<family>.parse_tool_call


@dataclass
class ReplyToolCall:
    """One parsed call, OpenAI-shaped: `arguments` is a JSON text."""

    id: str
    name: str
    arguments: str
    index: int

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass
class Piece:
    """What one piece of streamed text turned into (any part may be empty)."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ReplyToolCall] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning or self.tool_calls)

    def add(self, other: Piece) -> None:
        self.content += other.content
        self.reasoning += other.reasoning
        self.tool_calls += other.tool_calls


@dataclass
class Markers:
    """The reply's markup. None: the model (or the request) has no such section."""

    think: tuple[str, str] | None = None
    tool: tuple[str, str] | None = None
    parser: ToolParser | None = None
    tools: list[dict[str, Any]] | None = None  # as the parser wants them (qwen3_coder reads them)


State = Literal["content", "reasoning", "tool"]


def held_back(text: str, markers: list[str]) -> int:
    """How many characters at the end of `text` could begin one of `markers`."""
    for n in range(min(len(text), max((len(m) for m in markers), default=0)), 0, -1):
        tail = text[-n:]
        if any(m.startswith(tail) for m in markers):
            return n
    return 0


class ReplySplitter:
    """Feed the reply's text in any chunks; each `feed` returns what is certain so far.

    `in_reasoning`: the prompt opened a think block (generation starts inside it).
    `inline_reasoning`: thinking stays in `content`, markers and all (for clients that want it).
    """

    def __init__(
        self, markers: Markers, in_reasoning: bool = False, inline_reasoning: bool = False
    ) -> None:
        self.markers = markers
        self.inline = inline_reasoning
        opened = in_reasoning and markers.think is not None
        self.state: State = "reasoning" if opened and not inline_reasoning else "content"
        self.buffer = ""
        self.tool_text = ""
        self.calls = 0
        self.made: set[tuple[str, str]] = set()  # (name, arguments) of the calls so far
        self.seen_content = False  # leading whitespace after the think block is dropped
        self.seen_reasoning = False
        if opened and inline_reasoning and markers.think:
            self.buffer = markers.think[0]  # the prompt's opening marker, so content shows it

    def _opening(self) -> dict[str, State]:
        """Markers that leave the content state, with the state each enters."""
        out: dict[str, State] = {}
        if self.markers.tool and self.markers.parser:
            out[self.markers.tool[0]] = "tool"
        if self.markers.think and not self.inline:
            out[self.markers.think[0]] = "reasoning"
        return out

    def feed(self, text: str) -> Piece:
        self.buffer += text
        piece = Piece()
        while True:
            if self.state == "content":
                opening = self._opening()
                found = min(
                    ((self.buffer.find(m), m) for m in opening if m in self.buffer),
                    default=None,
                )
                if found is not None:
                    at, marker = found
                    self._content(piece, self.buffer[:at])
                    self.buffer = self.buffer[at + len(marker) :]
                    self.state = opening[marker]
                    continue
                keep = held_back(self.buffer, list(opening))
                self._content(piece, self.buffer[: len(self.buffer) - keep])
                self.buffer = self.buffer[len(self.buffer) - keep :]
                return piece
            end = self._closing()
            if end in self.buffer:
                at = self.buffer.find(end)
                inside = self.buffer[:at]
                self._inside(piece, inside.rstrip() if self.state == "reasoning" else inside)
                self._close(piece)
                self.buffer = self.buffer[at + len(end) :]
                self.state = "content"
                continue
            keep = held_back(self.buffer, [end])
            if self.state == "reasoning":  # whitespace before `</think>` is not reasoning
                rest = self.buffer[: len(self.buffer) - keep]
                keep += len(rest) - len(rest.rstrip())
            self._inside(piece, self.buffer[: len(self.buffer) - keep])
            self.buffer = self.buffer[len(self.buffer) - keep :]
            return piece

    def finish(self) -> Piece:
        """The end of the reply: what was held back, and a tool call cut off by the limit
        (parsed if it parses, dropped with a warning if not: never shown as content)."""
        piece = Piece()
        if self.state == "content":
            self._content(piece, self.buffer)
        else:
            self._inside(piece, self.buffer)
            if self.state == "tool":
                self._close(piece)
        self.buffer = ""
        return piece

    def _closing(self) -> str:
        pair = self.markers.tool if self.state == "tool" else self.markers.think
        assert pair is not None
        return pair[1]

    def _content(self, piece: Piece, text: str) -> None:
        if not self.seen_content:
            text = text.lstrip()
            self.seen_content = bool(text)
        piece.content += text

    def _inside(self, piece: Piece, text: str) -> None:
        if self.state == "reasoning":
            if not self.seen_reasoning:
                text = text.lstrip()
                self.seen_reasoning = bool(text)
            piece.reasoning += text
        else:
            self.tool_text += text

    def _close(self, piece: Piece) -> None:
        if self.state == "reasoning":
            self.seen_content = False  # "</think>\n\n" then the answer
            self.seen_reasoning = False
            return
        text, self.tool_text = self.tool_text, ""
        piece.tool_calls += self._parse(text)

    def _parse(self, text: str) -> list[ReplyToolCall]:
        parser = self.markers.parser
        assert parser is not None
        try:
            parsed = parser(text, self.markers.tools)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("dropped a tool call that does not parse (%s): %.200r", e, text)
            return []
        calls = []
        for call in parsed if isinstance(parsed, list) else [parsed]:
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                log.warning("dropped a tool call without a name: %.200r", text)
                continue
            arguments = call.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, ensure_ascii=False)
            if (call["name"], arguments) in self.made:
                # the same call again gets the same result: weak models repeat themselves
                log.info("dropped a repeated tool call: %s(%.200s)", call["name"], arguments)
                continue
            self.made.add((call["name"], arguments))
            call_id = str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}")
            calls.append(ReplyToolCall(call_id, call["name"], arguments, self.calls))
            self.calls += 1
        return calls

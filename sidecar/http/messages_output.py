"""The Messages API's reply: the message object, or its streamed events (`message_start`,
`ping`, `content_block_start` / `content_block_delta` (`text_delta`, `thinking_delta`,
`input_json_delta`) / `content_block_stop`, `message_delta` with the `stop_reason`,
`message_stop`; `error` when the turn fails after the stream began)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sidecar.engine.chat import ChatReply, ReplyDelta, Turn
from sidecar.engine.reply import ReplyToolCall
from sidecar.http.errors import OpenAIError, anthropic_body
from sidecar.http.turns import SSE


def stop_reason(reply: ChatReply) -> str:
    if reply.finish_reason == "length":
        return "max_tokens"
    if reply.tool_calls:
        return "tool_use"
    return "stop_sequence" if reply.stop_sequence else "end_turn"


def tool_input(call: ReplyToolCall) -> dict[str, Any]:
    try:
        value = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def tool_use(call: ReplyToolCall, whole: bool) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": call.id,
        "name": call.name,
        "input": tool_input(call) if whole else {},
    }


class MessageWriter:
    """Shapes one turn as an Anthropic message, or as its events while it streams.
    `thinking`: whether the caller asked for thinking blocks (else a <think> block is left out)."""

    def __init__(self, model: str, thinking: bool) -> None:
        self.model = model
        self.thinking = thinking
        self.id = f"msg_{uuid.uuid4().hex[:24]}"
        self.index = -1  # the content block streaming (or last streamed)
        self.open: str | None = None  # its type

    def message(
        self, content: list[dict[str, Any]], usage: dict[str, int], **extra: Any
    ) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
            **extra,
        }

    # -- streaming --

    def opening(self, turn: Turn) -> list[SSE]:
        prompt = turn.request.prompt
        usage = {"input_tokens": len(prompt) if isinstance(prompt, list) else 0, "output_tokens": 0}
        start = {"type": "message_start", "message": self.message([], usage)}
        return [("message_start", start), ("ping", {"type": "ping"})]

    def block(self, kind: str, block: dict[str, Any]) -> list[SSE]:
        out = self.close_open()
        self.index += 1
        self.open = kind
        start = {"type": "content_block_start", "index": self.index, "content_block": block}
        return [*out, ("content_block_start", start)]

    def block_delta(self, delta: dict[str, Any]) -> SSE:
        return "content_block_delta", {
            "type": "content_block_delta",
            "index": self.index,
            "delta": delta,
        }

    def close_open(self) -> list[SSE]:
        if self.open is None:
            return []
        out = []
        if self.open == "thinking":
            out.append(self.block_delta({"type": "signature_delta", "signature": ""}))
        self.open = None
        stop = {"type": "content_block_stop", "index": self.index}
        return [*out, ("content_block_stop", stop)]

    def delta(self, event: ReplyDelta) -> list[SSE]:
        out: list[SSE] = []
        if event.reasoning and self.thinking:
            if self.open != "thinking":
                out += self.block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out.append(self.block_delta({"type": "thinking_delta", "thinking": event.reasoning}))
        if event.text:
            if self.open != "text":
                out += self.block("text", {"type": "text", "text": ""})
            out.append(self.block_delta({"type": "text_delta", "text": event.text}))
        for call in event.tool_calls:
            out += self.block("tool_use", tool_use(call, whole=False))
            json_delta = {"type": "input_json_delta", "partial_json": call.arguments}
            out.append(self.block_delta(json_delta))
            out += self.close_open()
        return out

    def closing(self, reply: ChatReply) -> list[SSE]:
        out = self.close_open()
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(reply), "stop_sequence": reply.stop_sequence},
            "usage": {
                "input_tokens": reply.prompt_tokens,
                "output_tokens": reply.completion_tokens,
            },
        }
        return [*out, ("message_delta", delta), ("message_stop", {"type": "message_stop"})]

    def error(self, error: OpenAIError) -> list[SSE]:
        return [("error", anthropic_body(error))]

    # -- whole --

    def whole(self, reply: ChatReply) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if reply.reasoning and self.thinking:
            content.append({"type": "thinking", "thinking": reply.reasoning, "signature": ""})
        if reply.text or not reply.tool_calls:
            content.append({"type": "text", "text": reply.text})
        content += [tool_use(call, whole=True) for call in reply.tool_calls]
        usage = {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens}
        return self.message(
            content, usage, stop_reason=stop_reason(reply), stop_sequence=reply.stop_sequence
        )

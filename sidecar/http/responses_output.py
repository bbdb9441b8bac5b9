"""The Responses API's reply: the response object, its streamed events (`response.created`,
`response.in_progress`, `response.output_item.added`, `response.content_part.added`,
`response.output_text.delta`/`.done`, `response.reasoning_text.delta`/`.done`,
`response.function_call_arguments.delta`/`.done`, `response.output_item.done`, then
`response.completed` or `response.incomplete`; `error` and `response.failed` when the turn
fails), and the bounded in-process store behind `previous_response_id`."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sidecar.config import DEFAULT_TEMPERATURE
from sidecar.engine.chat import ChatReply, ReplyDelta, Turn
from sidecar.engine.reply import ReplyToolCall
from sidecar.engine.tools import ToolCallIn
from sidecar.http.errors import OpenAIError
from sidecar.http.responses_api import ResponsesRequest
from sidecar.http.turns import SSE

STORED_RESPONSES = 256  # responses kept for previous_response_id, newest first out last


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass
class Stored:
    body: dict[str, Any]  # the response object
    conversation: list[dict[str, Any]]  # input (without instructions) and output, as messages


class ResponseStore:
    """The last `size` stored responses of this process (what `store: true` keeps)."""

    def __init__(self, size: int = STORED_RESPONSES) -> None:
        self.size = size
        self.items: OrderedDict[str, Stored] = OrderedDict()

    def put(self, response_id: str, stored: Stored) -> None:
        self.items[response_id] = stored
        while len(self.items) > self.size:
            self.items.popitem(last=False)

    def pop(self, response_id: str) -> Stored:
        stored = self.get(response_id, param="response_id")
        del self.items[response_id]
        return stored

    def get(self, response_id: str, param: str = "previous_response_id") -> Stored:
        stored = self.items.get(response_id)
        if stored is None:
            raise OpenAIError(
                404,
                f"response {response_id!r} is not stored here: unknown, sent with store=false, "
                f"or evicted (this sidecar keeps the last {self.size} responses while it runs)",
                param=param,
                code="previous_response_not_found",
            )
        return stored


def usage_of(reply: ChatReply) -> dict[str, Any]:
    return {
        "input_tokens": reply.prompt_tokens,
        "input_tokens_details": {"cached_tokens": reply.cached_prompt_tokens},
        "output_tokens": reply.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def assistant_message(reply: ChatReply) -> dict[str, Any]:
    """The reply as the next turn's assistant message (engine-shaped)."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        calls = [ToolCallIn.model_validate(c.to_openai()) for c in reply.tool_calls]
        message["tool_calls"] = [c.to_template() for c in calls]
    return message


class ResponseWriter:
    """Shapes one turn as a response object, or as its events while it streams."""

    def __init__(
        self,
        body: ResponsesRequest,
        model: str,
        conversation: list[dict[str, Any]],
        store: ResponseStore,
    ) -> None:
        self.body = body
        self.model = model
        self.conversation = conversation
        self.store = store
        self.id = new_id("resp")
        self.created = int(time.time())
        self.sequence = 0
        self.items: list[dict[str, Any]] = []  # output items, finished
        self.open: dict[str, Any] | None = None  # the message or reasoning item streaming

    def envelope(self, status: str, **extra: Any) -> dict[str, Any]:
        body = self.body
        choice = body.tool_choice
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens,
            "model": self.model,
            "output": list(self.items),
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "previous_response_id": body.previous_response_id,
            "reasoning": {"effort": None, "summary": None},
            "store": body.store,
            "temperature": DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
            "text": {"format": (body.text.format if body.text else None) or {"type": "text"}},
            "tool_choice": choice.model_dump()
            if choice and not isinstance(choice, str)
            else (choice or "auto"),
            "tools": body.tools or [],
            "top_p": body.top_p or 1.0,
            "truncation": "disabled",
            "usage": None,
            "metadata": body.metadata or {},
            "user": body.user,
            **extra,
        }

    def event(self, kind: str, **fields: Any) -> SSE:
        self.sequence += 1
        return kind, {"type": kind, "sequence_number": self.sequence, **fields}

    # -- streaming --

    def opening(self, turn: Turn) -> list[SSE]:
        return [
            self.event("response.created", response=self.envelope("in_progress")),
            self.event("response.in_progress", response=self.envelope("in_progress")),
        ]

    def delta(self, event: ReplyDelta) -> list[SSE]:
        out = self.text_into("reasoning", event.reasoning) if event.reasoning else []
        if event.text:
            out += self.text_into("message", event.text)
        for call in event.tool_calls:
            out += self.close_open() + self.function_call(call)
        return out

    def where(self) -> dict[str, Any]:
        assert self.open is not None
        return {"item_id": self.open["id"], "output_index": len(self.items), "content_index": 0}

    def text_into(self, kind: str, text: str) -> list[SSE]:
        out = []
        if self.open is None or self.open["type"] != kind:
            out += self.close_open() + self.open_item(kind)
        assert self.open is not None
        self.open["content"][0]["text"] += text
        if kind == "message":
            out.append(
                self.event("response.output_text.delta", **self.where(), delta=text, logprobs=[])
            )
        else:
            out.append(self.event("response.reasoning_text.delta", **self.where(), delta=text))
        return out

    def open_item(self, kind: str) -> list[SSE]:
        item: dict[str, Any]
        if kind == "message":
            item = {
                "type": "message",
                "id": new_id("msg"),
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            part = {"type": "output_text", "text": "", "annotations": []}
        else:
            item = {"type": "reasoning", "id": new_id("rs"), "summary": [], "content": []}
            part = {"type": "reasoning_text", "text": ""}
        index = len(self.items)
        added = self.event("response.output_item.added", output_index=index, item=dict(item))
        self.open = item
        item["content"] = [part]
        return [added, self.event("response.content_part.added", **self.where(), part=dict(part))]

    def close_open(self) -> list[SSE]:
        item = self.open
        if item is None:
            return []
        part = item["content"][0]
        done = "output_text" if item["type"] == "message" else "reasoning_text"
        out = [
            self.event(f"response.{done}.done", **self.where(), text=part["text"]),
            self.event("response.content_part.done", **self.where(), part=part),
        ]
        if item["type"] == "message":
            item["status"] = "completed"
        self.items.append(item)
        self.open = None
        out.append(
            self.event("response.output_item.done", output_index=len(self.items) - 1, item=item)
        )
        return out

    def function_call(self, call: ReplyToolCall) -> list[SSE]:
        item = {
            "type": "function_call",
            "id": new_id("fc"),
            "call_id": call.id,
            "name": call.name,
            "arguments": "",
            "status": "in_progress",
        }
        index = len(self.items)
        where = {"item_id": item["id"], "output_index": index}
        out = [
            self.event("response.output_item.added", output_index=index, item=dict(item)),
            self.event("response.function_call_arguments.delta", **where, delta=call.arguments),
            self.event(
                "response.function_call_arguments.done",
                **where,
                name=call.name,
                arguments=call.arguments,
            ),
        ]
        item.update(arguments=call.arguments, status="completed")
        self.items.append(item)
        out.append(self.event("response.output_item.done", output_index=index, item=item))
        return out

    def closing(self, reply: ChatReply) -> list[SSE]:
        out = self.close_open()
        if not self.items:  # nothing was said: an empty message, as OpenAI sends one
            out += self.open_item("message") + self.close_open()
        response = self.finish(reply)
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return [*out, self.event(kind, response=response)]

    def error(self, error: OpenAIError) -> list[SSE]:
        failure = {"code": error.code or "server_error", "message": error.message}
        return [
            self.event("error", code=error.code, message=error.message, param=error.param),
            self.event("response.failed", response=self.envelope("failed", error=failure)),
        ]

    # -- whole --

    def whole(self, reply: ChatReply) -> dict[str, Any]:
        if reply.reasoning:
            self.text_into("reasoning", reply.reasoning)
        if reply.text or not reply.tool_calls:
            self.text_into("message", reply.text)
        self.close_open()
        for call in reply.tool_calls:
            self.function_call(call)
        return self.finish(reply)

    def finish(self, reply: ChatReply) -> dict[str, Any]:
        """The final response object, stored when asked."""
        incomplete = reply.finish_reason == "length"
        response = self.envelope(
            "incomplete" if incomplete else "completed",
            incomplete_details={"reason": "max_output_tokens"} if incomplete else None,
            usage=usage_of(reply),
        )
        if self.body.store:
            conversation = [*self.conversation, assistant_message(reply)]
            self.store.put(self.id, Stored(response, conversation))
        return response

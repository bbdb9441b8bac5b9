"""Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`) as a thin
edge over the engine's one chat turn: the request maps to chat messages (the one `Message`
model, so its validation and limits apply), tools and tool_choice; the reply is shaped by
`MessageWriter` (sidecar/http/messages_output.py).

    system (a string or text blocks) -> a system message first
    content blocks: text, image (base64 source), tool_use (assistant), tool_result (user),
                    thinking (assistant; skipped, templates drop earlier thinking)
    tools (custom tools: name, description, input_schema), tool_choice auto/any/tool/none
    stop_sequences, max_tokens, temperature (also through the SDK's extra_body), top_p
    thinking: enabled/adaptive returns a model's <think> block as a `thinking` block
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from sidecar import limits
from sidecar.engine.content import Message
from sidecar.engine.tools import NamedToolChoice, ToolChoice, ToolDef, ToolRequest
from sidecar.engine.tools import of_request as tools_of
from sidecar.errors import EngineError
from sidecar.http.errors import OpenAIError, from_validation
from sidecar.http.schemas import Lenient


class TextBlock(Lenient):
    type: Literal["text"]
    text: str


class ImageSource(Lenient):
    type: Literal["base64", "url", "file"]
    media_type: str | None = None
    data: str | None = None

    @model_validator(mode="after")
    def inline(self) -> ImageSource:
        if self.type != "base64" or not self.data or not self.media_type:
            raise ValueError(
                "images need a base64 source ({type: base64, media_type, data}); "
                "the sidecar does not fetch images"
            )
        return self


class ImageBlock(Lenient):
    type: Literal["image"]
    source: ImageSource


class ToolUseBlock(Lenient):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(Lenient):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]] = ""
    is_error: bool = False


class ThinkingBlock(Lenient):
    type: Literal["thinking", "redacted_thinking"]


Block = Annotated[
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock,
    Field(discriminator="type"),
]


class InputMessage(Lenient):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class Tool(Lenient):
    name: str
    description: str | None = None
    input_schema: dict[str, Any]
    type: str | None = None

    @field_validator("type")
    @classmethod
    def custom(cls, value: str | None) -> str | None:
        if value not in (None, "custom"):
            raise ValueError(f"only custom tools are supported, not {value!r} (no server tools)")
        return value


class ToolChoiceBlock(Lenient):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def named(self) -> ToolChoiceBlock:
        if self.type == "tool" and not self.name:
            raise ValueError("tool_choice of type 'tool' needs the tool's name")
        return self


class Thinking(Lenient):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class CountTokensRequest(Lenient):
    model: str | None = None
    messages: Annotated[list[InputMessage], Field(min_length=1)]
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoiceBlock | None = None
    thinking: Thinking | None = None

    @field_validator("messages")
    @classmethod
    def bounded(cls, value: list[InputMessage], info: ValidationInfo) -> list[InputMessage]:
        """The limits of every chat edge: messages and text characters (images have theirs)."""
        chars = sum(text_chars(m.content) for m in value)
        limits.check_messages(len(value), chars, limits.of(info))
        return value

    @property
    def thinks(self) -> bool:
        return self.thinking is not None and self.thinking.type != "disabled"

    def tool_request(self) -> ToolRequest | None:
        tools = [
            ToolDef.model_validate(
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.input_schema,
                    },
                }
            )
            for t in self.tools or []
        ]
        choice: ToolChoice | None = None
        parallel = None
        if self.tool_choice is not None:
            kind = self.tool_choice.type
            parallel = not self.tool_choice.disable_parallel_tool_use
            if kind == "tool":
                named = {"type": "function", "function": {"name": self.tool_choice.name}}
                choice = NamedToolChoice.model_validate(named)
            else:
                choice = {"auto": "auto", "any": "required", "none": "none"}[kind]  # type: ignore[assignment]
        return tools_of(tools or None, choice, parallel)


class MessagesRequest(CountTokensRequest):
    max_tokens: Annotated[int, Field(ge=1)]
    stop_sequences: list[str] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    top_k: int | None = None
    stream: bool = False
    metadata: dict[str, Any] | None = None

    @field_validator("top_k")
    @classmethod
    def no_top_k(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError("top_k is not supported; use temperature or top_p")
        return value

    @field_validator("stop_sequences")
    @classmethod
    def stops(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        limits.check_stops(value or [], limits.of(info))
        return value

    def sampling(self) -> dict[str, Any]:
        out: dict[str, Any] = {"max_tokens": self.max_tokens, "stop": self.stop_sequences or []}
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.top_p is not None:
            out["top_p"] = self.top_p
        return out


def text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(
            text_chars(getattr(b, "text", None) or getattr(b, "content", None) or "")
            + len(str(getattr(b, "input", "") or ""))
            for b in content
        )
    return 0


def image_part(block: ImageBlock) -> dict[str, Any]:
    url = f"data:{block.source.media_type};base64,{block.source.data}"
    return {"type": "image_url", "image_url": {"url": url}}


def parts_of(blocks: list[Any]) -> list[dict[str, Any]]:
    return [
        image_part(b) if isinstance(b, ImageBlock) else {"type": "text", "text": b.text}
        for b in blocks
        if isinstance(b, TextBlock | ImageBlock)
    ]


def user_messages(content: list[Any]) -> list[dict[str, Any]]:
    """A user turn's blocks: its tool results (each a tool message), then its own text."""
    out: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, ToolResultBlock):
            result = block.content if isinstance(block.content, str) else parts_of(block.content)
            if block.is_error:  # templates have no error flag: the model reads it in the text
                error = {"type": "text", "text": "Error: "}
                result = f"Error: {result}" if isinstance(result, str) else [error, *result]
            out.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": result})
        elif isinstance(block, ToolUseBlock):
            raise ValueError("tool_use blocks belong in assistant messages")
    parts = parts_of(content)
    if parts or not out:
        out.append({"role": "user", "content": parts})
    return out


def assistant_message(content: list[Any]) -> dict[str, Any]:
    calls = [
        {"id": b.id, "function": {"name": b.name, "arguments": json.dumps(b.input)}}
        for b in content
        if isinstance(b, ToolUseBlock)
    ]
    if any(isinstance(b, ToolResultBlock) for b in content):
        raise ValueError("tool_result blocks belong in user messages")
    text = "".join(b.text for b in content if isinstance(b, TextBlock))
    return {"role": "assistant", "content": text, **({"tool_calls": calls} if calls else {})}


def chat_messages(body: CountTokensRequest, context: Any) -> list[dict[str, Any]]:
    """The request as chat messages (engine-shaped, through the one `Message` model)."""
    raw: list[dict[str, Any]] = []
    if body.system:
        system = body.system
        text = system if isinstance(system, str) else "".join(b.text for b in system)
        raw.append({"role": "system", "content": text})
    try:
        for message in body.messages:
            content = message.content
            if isinstance(content, str):
                raw.append({"role": message.role, "content": content})
            elif message.role == "user":
                raw += user_messages(content)
            else:
                raw.append(assistant_message(content))
        return [Message.model_validate(m, context=context).to_template() for m in raw]
    except ValidationError as e:
        raise OpenAIError(400, f"messages: {from_validation(e.errors()).message}") from e
    except (ValueError, EngineError) as e:
        raise OpenAIError(400, f"messages: {e}", param="messages") from e

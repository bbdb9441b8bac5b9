"""OpenAI-style message content parts (`[{"type": "text", "text": ...}, {"type": "image_url",
"image_url": {"url": "data:image/png;base64,..."}}]`), validated the same way at both edges:
the HTTP port (`sidecar/http/schemas.py`) and JSON-RPC `mlx/chat` (`sidecar/lsp/chat.py`).
`Message` is the one chat message model; `sidecar.engine.chat.start_turn` turns messages
into the turn's prompt and images."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator
from pydantic.alias_generators import to_camel

from sidecar import limits
from sidecar.engine.images import SOURCE_RULE, is_inline
from sidecar.engine.messages import MessageRole, template_role
from sidecar.engine.tools import ToolCallIn


class Part(BaseModel):
    """Unknown fields ignored (clients send vendor extensions); known ones strictly typed."""

    model_config = ConfigDict(extra="ignore", strict=True)


class ImageURL(Part):
    url: str
    detail: str | None = None


class ContentPart(Part):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | None = None

    @model_validator(mode="after")
    def complete(self, info: ValidationInfo) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a text part needs 'text'")
        if self.type == "image_url" and self.image_url is None:
            raise ValueError("an image_url part needs 'image_url': {'url': 'data:...'}")
        # Whatever the part's type says, an `image_url` is an image to the engine: only inline
        # ones (no fetching, and no local paths: no file probing).
        if self.image_url is not None:
            if not is_inline(self.image_url.url):
                raise ValueError(f"image_url: {SOURCE_RULE}")
            limits.check_image_url(self.image_url.url, limits.of(info))
        return self


def text_chars(content: str | list[ContentPart] | None) -> int:
    """Characters of text in a message's content (images are counted by their own limit)."""
    if isinstance(content, list):
        return sum(len(p.text or "") for p in content)
    return len(content or "")


def to_template(content: str | list[ContentPart] | None) -> str | list[dict[str, object]]:
    """The content as the engine takes it: a string, or the parts as plain dicts."""
    if isinstance(content, list):
        return [part.model_dump(exclude_none=True) for part in content]
    return content or ""


class Message(BaseModel):
    """One chat message, the same model at every edge (the OpenAI port, JSON-RPC `mlx/chat`,
    and the Responses / Messages dialects, which map their shapes to it). Keys in snake_case or
    camelCase; unknown ones ignored (the JSON-RPC edge forbids them)."""

    model_config = ConfigDict(
        extra="ignore", strict=True, alias_generator=to_camel, populate_by_name=True
    )

    role: MessageRole
    # A string, or OpenAI-style parts: text and inline images
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = None  # a tool result's call
    reasoning_content: str | None = None  # an assistant's earlier thinking (Qwen3 renders it)

    @model_validator(mode="after")
    def tool_fields(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return self

    def text_chars(self) -> int:
        return text_chars(self.content) + len(self.name or "")

    def to_template(self) -> dict[str, Any]:
        """The message as the engine takes it: no 'developer' role; list contents stay
        OpenAI-style parts (text models join the text, vision models place the images)."""
        out: dict[str, Any] = {
            "role": template_role(self.role),
            "content": to_template(self.content),
        }
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [c.to_template() for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        if self.reasoning_content:
            out["reasoning_content"] = self.reasoning_content
        return out

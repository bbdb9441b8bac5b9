"""OpenAI-style message content parts (`[{"type": "text", "text": ...}, {"type": "image_url",
"image_url": {"url": "data:image/png;base64,..."}}]`), validated the same way at both edges:
the HTTP port (`sidecar/http/schemas.py`) and JSON-RPC `mlx/chat` (`sidecar/lsp/chat.py`).
The engine turns them into a prompt and images (`Engine.chat_prompt`, `message_images`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

from sidecar import limits


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
        # Only inline images: no fetching, and no local paths (file probing).
        inline = self.image_url is not None and self.image_url.url.startswith("data:")
        if self.type == "image_url" and not inline:
            raise ValueError(
                "an image_url part needs a data: URL (data:image/png;base64,...); "
                "the sidecar does not fetch images"
            )
        if self.type == "image_url" and self.image_url is not None:
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

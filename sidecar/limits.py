"""How much one request may ask for, checked at both edges (HTTP bodies, JSON-RPC params) before
any work starts: a request the engine could not serve in reasonable time or memory is a clear
400 / -32602 naming the field, not a long stall for every other user of the port.

The limits are settings (`MLX_SIDECAR_LIMITS__MAX_EMBED_INPUTS=64`); the request models read
them from the validation context (`model_validate(data, context=limits)`)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field, ValidationInfo


class Limits(BaseModel):
    max_messages: int = Field(default=1024, ge=1)
    # Characters of text in one prompt (all messages, or prompt + suffix): a few times the
    # longest context a local model takes, so a real prompt is never refused for length here.
    max_prompt_chars: int = Field(default=1_000_000, ge=1)
    max_stops: int = Field(default=16, ge=0)
    max_stop_chars: int = Field(default=256, ge=1)
    # OpenAI takes 2,048 inputs; on a laptop CPU 512 short texts already take seconds.
    max_embed_inputs: int = Field(default=512, ge=1)
    max_embed_input_chars: int = Field(default=32_768, ge=1)
    # Bytes of one inline image (decoded): a screenshot is well under this; the vision
    # processor resizes anyway, so a bigger image only costs time and memory.
    max_image_bytes: int = Field(default=8 << 20, ge=1)
    # Pixels of one image and of all images of one request, read from the image headers before
    # anything is decoded (a 164 KB PNG can declare 13000x13000 pixels: 500 MB decoded). A 5K
    # screenshot is 14.7 M pixels; the vision processor resizes to far fewer anyway.
    max_image_pixels: int = Field(default=16_777_216, ge=1)
    max_request_pixels: int = Field(default=50_331_648, ge=1)


DEFAULT = Limits()


def of(info: ValidationInfo) -> Limits:
    return info.context if isinstance(info.context, Limits) else DEFAULT


def check_messages(count: int, chars: int, limits: Limits) -> None:
    if count > limits.max_messages:
        raise ValueError(f"at most {limits.max_messages} messages are accepted, got {count}")
    check_prompt_chars(chars, limits)


def check_prompt_chars(chars: int, limits: Limits) -> None:
    if chars > limits.max_prompt_chars:
        raise ValueError(
            f"the prompt has {chars} characters; at most {limits.max_prompt_chars} are accepted"
        )


def check_stops(stops: Sequence[str], limits: Limits) -> None:
    if len(stops) > limits.max_stops:
        raise ValueError(f"at most {limits.max_stops} stop sequences are supported")
    if any(not s for s in stops):
        raise ValueError("stop sequences must be non-empty")
    if any(len(s) > limits.max_stop_chars for s in stops):
        raise ValueError(f"a stop sequence has at most {limits.max_stop_chars} characters")


def check_embed_inputs(texts: Sequence[str], limits: Limits) -> None:
    if len(texts) > limits.max_embed_inputs:
        raise ValueError(
            f"at most {limits.max_embed_inputs} inputs per request, got {len(texts)}; "
            "send them in several requests"
        )
    longest = max((len(t) for t in texts), default=0)
    if longest > limits.max_embed_input_chars:
        raise ValueError(
            f"an input has {longest} characters; at most {limits.max_embed_input_chars} are "
            "accepted (the embedding model reads only its first few hundred tokens anyway)"
        )


def check_image_url(url: str, limits: Limits) -> None:
    """A `data:` URL's decoded size against `max_image_bytes` (from the base64 length, so a
    huge image is refused before it is decoded)."""
    payload = url.partition(",")[2]
    size = len(payload) * 3 // 4 - payload[-2:].count("=")
    if size > limits.max_image_bytes:
        raise ValueError(
            f"an image has {size} bytes; at most {limits.max_image_bytes} are accepted "
            "(MLX_SIDECAR_LIMITS__MAX_IMAGE_BYTES)"
        )

"""Images for vision models: where they may come from, how big they may be, and decoding.

An image comes only inline: a `data:<type>;base64,...` URL (every edge: the OpenAI port,
JSON-RPC `mlx/chat`, the editor's chat panel) or raw bytes (in-process callers). Never a file
path, a `file://` URL or an http(s) URL: a request must not make the server read its own files
(and the refusal must not say whether a path exists), and the sidecar fetches nothing. Bare
base64 is refused too: a string that is not a `data:` URL is refused by its form alone.

Size is bounded twice before any pixel is decoded: the encoded bytes (`max_image_bytes`), and
the pixel count read from the image's header (`max_image_pixels` per image,
`max_request_pixels` per request), since a few hundred KB of PNG can declare billions of
pixels. The decoded RGB bytes are then held against the engine's memory budget for as long as
the request runs (`Engine.generate`, `MemoryGovernor.hold`).

No MLX here: `load_images` runs off the event loop and off the worker thread.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sidecar.errors import EngineError
from sidecar.limits import DEFAULT, Limits

MAX_IMAGES = 16
RGB_BYTES = 3  # what one decoded pixel costs once converted for the processor
SOURCE_RULE = (
    "images are accepted only inline, as data: URLs (data:image/png;base64,...); "
    "the sidecar reads no files and fetches no URLs"
)


@dataclass
class Decoded:
    images: list[Any]  # RGB PIL images
    pixels: int  # all images together

    @property
    def nbytes(self) -> int:
        return self.pixels * RGB_BYTES


def is_inline(url: str) -> bool:
    return url[:5].lower() == "data:"


def image_bytes(source: str | bytes, n: int, limits: Limits = DEFAULT) -> bytes:
    """The encoded bytes of image `n` (1-based): a `data:` URL's payload, or raw bytes."""
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
    elif isinstance(source, str) and is_inline(source.strip()):
        header, sep, payload = source.strip().partition(",")
        if not sep or not header.lower().endswith(";base64"):
            raise EngineError(f"image {n} is a data: URL that is not base64 (data:<type>;base64,…)")
        if len(payload) * 3 // 4 > limits.max_image_bytes + 3:
            raise too_many_bytes(len(payload) * 3 // 4, limits)
        try:
            data = base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as e:
            raise EngineError(f"image {n} has invalid base64 data: {e}") from e
    else:  # a path, a file:// or http(s) URL, bare base64: refused alike, nothing is opened
        raise EngineError(f"image {n}: {SOURCE_RULE}")
    if len(data) > limits.max_image_bytes:
        raise too_many_bytes(len(data), limits)
    return data


def too_many_bytes(size: int, limits: Limits) -> EngineError:
    return EngineError(
        f"an image has {size} bytes; at most {limits.max_image_bytes} are accepted "
        "(MLX_SIDECAR_LIMITS__MAX_IMAGE_BYTES)"
    )


def load_images(
    sources: list[str | bytes],
    limits: Limits = DEFAULT,
    reserve: Callable[[int], None] | None = None,
) -> Decoded:
    """Decode image sources into RGB PIL images; a bad or too large one raises EngineError
    naming it before anything is decoded (sizes come from the headers). `reserve(nbytes)` is
    called with the decoded size before decoding starts, and may refuse by raising (the memory
    budget). Blocking: call it off the event loop."""
    from PIL import Image, UnidentifiedImageError

    if len(sources) > MAX_IMAGES:
        raise EngineError(f"at most {MAX_IMAGES} images per request; got {len(sources)}")
    opened = []
    pixels = 0
    try:
        for n, source in enumerate(sources, 1):
            data = image_bytes(source, n, limits)
            try:
                with warnings.catch_warnings():  # the size is checked below, against settings
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    img = Image.open(io.BytesIO(data))  # reads the header only
            except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
                raise EngineError(f"image {n} is not an image this server can read") from None
            opened.append(img)
            width, height = img.size
            if width * height > limits.max_image_pixels:
                raise EngineError(
                    f"image {n} is {width}x{height} pixels; at most {limits.max_image_pixels} "
                    "pixels per image are accepted (MLX_SIDECAR_LIMITS__MAX_IMAGE_PIXELS)"
                )
            pixels += width * height
            if pixels > limits.max_request_pixels:
                raise EngineError(
                    f"the images have {pixels} pixels together; at most "
                    f"{limits.max_request_pixels} are accepted per request "
                    "(MLX_SIDECAR_LIMITS__MAX_REQUEST_PIXELS)"
                )
        if reserve is not None:
            reserve(pixels * RGB_BYTES)
        images = []
        for n, img in enumerate(opened, 1):
            try:
                images.append(img.convert("RGB"))
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                raise EngineError(f"image {n} could not be decoded: {e}") from None
    finally:
        for img in opened:
            img.close()
    return Decoded(images, pixels)

"""Document URIs as local paths: the one place the editor's `file:` URIs become paths."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse


def uri_to_path(uri: str) -> Path | None:
    """The local path of a `file:` URI (percent-escapes decoded); None for any other scheme."""
    if not uri.startswith("file:"):
        return None
    return Path(unquote(urlparse(uri).path))

"""Keys out of everything relayed from an upstream: an upstream may echo the request's
`Authorization` header (or the key alone) in an error message, a reply or a stream event, and
whatever it sends is relayed to the client (HTTP body, JSON-RPC error) and logged. So every
string from an upstream passes through `Redactor` first: the key this process sends it, and any
`Bearer <token>`, become `***`."""

from __future__ import annotations

import re
from typing import Any

# A bearer credential (RFC 6750's token characters, 8 or more: "the bearer of" stays text).
BEARER = re.compile(r"\b(Bearer|bearer|BEARER)(\s+|%20)[A-Za-z0-9._~+/=-]{8,}")
MASK = "***"
MIN_KEY_CHARS = 4  # a shorter "key" would mask ordinary text; it is no secret worth hiding


class Redactor:
    def __init__(self) -> None:
        self.keys: set[str] = set()

    def add(self, key: str | None) -> None:
        if key and len(key) >= MIN_KEY_CHARS:
            self.keys.add(key)

    def text(self, value: str) -> str:
        for key in self.keys:
            if key in value:
                value = value.replace(key, MASK)
        return BEARER.sub(rf"\1\2{MASK}", value)

    def json(self, value: Any) -> Any:
        """A parsed JSON value with every string (keys of objects too) redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k): self.json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v) for v in value]
        return value

"""Stop strings on decoded text: cut at the first match, never emit a partial stop string."""

from __future__ import annotations


class StopStrings:
    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.longest = max((len(s) for s in self.stops), default=0)

    def find(self, text: str, start: int) -> int | None:
        """Index of the earliest stop string that ends after `start`, or None."""
        if not self.stops:
            return None
        lo = max(0, start - self.longest + 1)
        hits = [i for s in self.stops if (i := text.find(s, lo)) != -1]
        return min(hits) if hits else None

    def safe_end(self, text: str) -> int:
        """How much of `text` can be emitted: all but a tail that may begin a stop string."""
        for k in range(min(self.longest - 1, len(text)), 0, -1):
            tail = text[-k:]
            if any(s.startswith(tail) for s in self.stops):
                return len(text) - k
        return len(text)

    def matched(self, text: str, at: int) -> str | None:
        """The stop string found at `at` (what `find` returned)."""
        return next((s for s in self.stops if text.startswith(s, at)), None)

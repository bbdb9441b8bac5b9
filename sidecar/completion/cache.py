"""A small LRU of recent completions keyed by (prefix, suffix).

Besides exact repeats it serves the "typed through the suggestion" case: the user typed the
first characters of a suggestion, so the rest of it still applies without asking the model.
"""

from __future__ import annotations

from collections import OrderedDict

PREFIX_KEY_CHARS = 4000  # the end of the prefix and the start of the suffix identify a place
SUFFIX_KEY_CHARS = 1000
MAX_TYPED_THROUGH = 256


def cache_key(prefix: str, suffix: str) -> tuple[str, str]:
    return prefix[-PREFIX_KEY_CHARS:], suffix[:SUFFIX_KEY_CHARS]


class CompletionCache:
    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, prefix: str, suffix: str, completion: str) -> None:
        if self.capacity <= 0:
            return
        key = cache_key(prefix, suffix)
        self._items[key] = completion
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, prefix: str, suffix: str) -> str | None:
        """The cached completion for this place, or the unfinished rest of one made a few
        characters earlier whose start the user has since typed."""
        key = cache_key(prefix, suffix)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        for n in range(1, min(len(prefix), MAX_TYPED_THROUGH) + 1):
            earlier = cache_key(prefix[:-n], suffix)
            hit = self._items.get(earlier)
            if hit is None:
                continue
            typed = prefix[-n:]
            if hit.startswith(typed) and len(hit) > n:
                self._items.move_to_end(earlier)
                return hit[n:]
        return None

    def clear(self) -> None:
        self._items.clear()

"""Cross-file context candidates from the workspace index: chunks of other files that the
retrieval finds for the code around the cursor, offered after the context ring's own chunks.

Never on a keystroke's path: `get` answers from a per-document cache at once and, when the
document has no entry or an old one, starts one lookup in the background (the LSP layer gives
the lookup: a workspace search). A document's entry is refreshed at most every `refresh_s`, so
the picks, and the prompt head's KV, stay put while the user types.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from sidecar.completion.context import Chunk

log = logging.getLogger(__name__)
QUERY_LINES = 24  # the prefix's last lines are the query
Lookup = Callable[[str, str], Awaitable[list[Chunk]]]  # (document uri, query) -> chunks


class RelatedContext:
    def __init__(self, lookup: Lookup, refresh_s: float = 30.0, max_docs: int = 64) -> None:
        self.lookup = lookup
        self.refresh_s = refresh_s
        self.max_docs = max_docs
        self.cache: dict[str, tuple[float, list[Chunk]]] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def get(self, uri: str, prefix: str) -> list[Chunk]:
        """The cached chunks for `uri` (maybe none yet); a lookup starts when they are missing
        or older than `refresh_s`."""
        entry = self.cache.get(uri)
        stale = entry is None or time.monotonic() - entry[0] > self.refresh_s
        if stale and uri not in self.tasks:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to look up with
                query = "\n".join(prefix.split("\n")[-QUERY_LINES:])
                self.tasks[uri] = asyncio.get_running_loop().create_task(self._fill(uri, query))
        return entry[1] if entry else []

    async def _fill(self, uri: str, query: str) -> None:
        try:
            chunks = [c for c in await self.lookup(uri, query) if c.uri != uri]
        except Exception as e:  # no index, embedding model busy or gone: no candidates
            log.debug("related context for %s: %s", uri, e)
            chunks = []
        finally:
            self.tasks.pop(uri, None)
        self.cache[uri] = (time.monotonic(), chunks)
        while len(self.cache) > self.max_docs:
            self.cache.pop(next(iter(self.cache)))

    def forget(self, uri: str) -> None:
        self.cache.pop(uri, None)

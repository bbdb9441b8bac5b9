"""When the indexer sends its next embedding call, and how big it is.

BULK priority alone does not keep typing fast: an embedding forward pass is one atomic step on
the worker, and a pass over code chunks (100-300 tokens each) costs far more than a decode step
(on 2 CPU cores one MiniLM chunk ~0.3 s, a SmolLM2 decode step ~0.1 s). A keystroke whose
completion arrives while a 16-chunk pass runs waits for all of it. So the indexer yields to the
user's work before each call: it sends a call only once the engine has had no completion or
chat work, and the editor no completion request (keystrokes answered from the completion cache
leave the engine idle, but the next one may not be), for `quiet_s` (longer than the gap between
two typed keys), and while the user was
active lately (`recent_s`) the call is small (`busy_texts`), so a pass that a keystroke does run
into is short. When the engine has been idle long, calls are `idle_texts` big (batched passes
are faster per text). After `max_wait_s` without a quiet moment a one-text call goes anyway, so
indexing still progresses under constant load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from sidecar.engine.requests import Priority

POLL_S = 0.02


class Pacer:
    def __init__(
        self,
        urgent_work: Callable[[], Priority | None],
        user_activity: Callable[[], float] | None,
        idle_texts: int,
        busy_texts: int = 2,
        quiet_s: float = 0.5,
        recent_s: float = 5.0,
        max_wait_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        # `clock` and `sleep` are the real ones except in tests, which step time themselves.
        self.clock = clock
        self.sleep = sleep
        self.urgent_work = urgent_work
        self.user_activity = user_activity or (lambda: 0.0)
        self.idle_texts = idle_texts
        self.busy_texts = min(busy_texts, idle_texts)
        self.quiet_s = quiet_s
        self.recent_s = recent_s
        self.max_wait_s = max_wait_s
        self.last_active = clock() - recent_s  # assume idle at start
        self.waited_s = 0.0  # total time spent yielding (reported by the run)

    def _user_active(self) -> bool:
        work = self.urgent_work()
        return work is not None and work < Priority.BULK

    async def next_size(self) -> int:
        """Wait for a quiet moment (at most max_wait_s); the number of texts to send now."""
        started = self.clock()
        while True:
            now = self.clock()
            if self._user_active():
                self.last_active = now
            self.last_active = max(self.last_active, self.user_activity())
            quiet_for = now - self.last_active
            if quiet_for >= self.quiet_s:
                break
            if now - started >= self.max_wait_s:
                self.waited_s += now - started
                return 1  # no quiet moment came: the smallest call, so indexing still moves
            await self.sleep(POLL_S)
        self.waited_s += self.clock() - started
        return self.idle_texts if quiet_for >= self.recent_s else self.busy_texts

"""A circuit breaker per upstream: after `failures` consecutive failed requests it opens, and for
`open_s` seconds no request is sent (each fails at once, naming the upstream); then one request
goes through as a probe (half-open): its success closes the breaker, its failure opens it again.

Hand-written: it is a dozen lines of state, and the libraries that offer one (pybreaker,
aiobreaker) wrap calls rather than streams whose success is known only after the first byte."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass
class Breaker:
    failures: int
    open_s: float
    consecutive: int = 0
    opened_at: float | None = None
    probing: bool = False

    def state(self) -> State:
        if self.opened_at is None:
            return "closed"
        if time.monotonic() - self.opened_at < self.open_s or self.probing:
            return "open"
        return "half_open"

    def retry_in_s(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.open_s - (time.monotonic() - self.opened_at))

    def allow(self) -> bool:
        """May a request go now? In half-open, only one (the probe) until it reports."""
        state = self.state()
        if state == "closed":
            return True
        if state == "half_open":
            self.probing = True
            return True
        return False

    def success(self) -> None:
        self.consecutive = 0
        self.opened_at = None
        self.probing = False

    def failure(self) -> None:
        self.consecutive += 1
        if self.probing or self.consecutive >= self.failures:
            self.opened_at = time.monotonic()
        self.probing = False

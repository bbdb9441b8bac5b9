"""The usage ledger: requests, tokens in and out, errors, latency and cost per model and
upstream, in SQLite in the sidecar's state directory (`Settings.usage_db`), so it survives
restarts and `mlx-sidecar usage` reads it from another process.

`record` is the `UsageSink`: it only updates the in-memory totals (under a lock, for the MLX
worker and the loop alike) and queues the event; a writer thread batches the queue into one
transaction, so neither the asyncio loop nor the worker ever waits on the disk. Rows are one per
(day, model, upstream, endpoint): the file stays small however many keystrokes it counts.
Cost is priced when recorded (`prices` per million tokens, by model id, then by upstream), so a
later price change does not rewrite what was spent; without a price the cost stays NULL."""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel

from sidecar.config import Price
from sidecar.usage.events import UsageEvent
from sidecar.wire import ModelUsage

log = logging.getLogger(__name__)
FLUSH_S = 0.5  # the writer commits what arrived in this window as one transaction
SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    day TEXT NOT NULL,
    model TEXT NOT NULL,
    upstream TEXT NOT NULL DEFAULT '',
    endpoint TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    latency_sum_s REAL NOT NULL DEFAULT 0,
    latency_count INTEGER NOT NULL DEFAULT 0,
    cost REAL,
    PRIMARY KEY (day, model, upstream, endpoint)
)
"""
UPSERT = """
INSERT INTO usage (day, model, upstream, endpoint, requests, errors, prompt_tokens,
                   completion_tokens, latency_sum_s, latency_count, cost)
VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, 1, ?)
ON CONFLICT (day, model, upstream, endpoint) DO UPDATE SET
    requests = requests + 1,
    errors = errors + excluded.errors,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    latency_sum_s = latency_sum_s + excluded.latency_sum_s,
    latency_count = latency_count + 1,
    cost = CASE WHEN excluded.cost IS NULL THEN cost ELSE COALESCE(cost, 0) + excluded.cost END
"""
TOTALS = """
SELECT model, upstream, SUM(requests), SUM(errors), SUM(prompt_tokens), SUM(completion_tokens),
       SUM(latency_sum_s), SUM(latency_count), SUM(cost)
FROM usage GROUP BY model, upstream ORDER BY model, upstream
"""


class UsageTotals(BaseModel):
    """One model (local, or `UPSTREAM/MODEL` with its upstream): all it served, all days."""

    model: str
    upstream: str | None
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_sum_s: float = 0.0
    latency_count: int = 0
    cost: float | None = None  # None: no price configured for it

    @property
    def latency_mean_s(self) -> float | None:
        return self.latency_sum_s / self.latency_count if self.latency_count else None

    def to_wire(self) -> ModelUsage:
        return ModelUsage(**self.model_dump(), latency_mean_s=self.latency_mean_s)

    def add(self, event: UsageEvent, cost: float | None) -> None:
        self.requests += 1
        self.errors += int(event.error)
        self.prompt_tokens += event.prompt_tokens
        self.completion_tokens += event.completion_tokens
        self.latency_sum_s += event.latency_s
        self.latency_count += 1
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost


def price_of(event: UsageEvent, prices: Mapping[str, Price]) -> Price | None:
    """The model's own price, else its upstream's; local models are free unless priced."""
    found = prices.get(event.model)
    if found is None and event.upstream is not None:
        found = prices.get(event.upstream)
    return found


def cost_of(event: UsageEvent, prices: Mapping[str, Price]) -> float | None:
    price = price_of(event, prices)
    if price is None:
        return None
    return (event.prompt_tokens * price.input + event.completion_tokens * price.output) / 1e6


class UsageStore:
    """The ledger on one SQLite file. `writer=False` opens it to read only (`mlx-sidecar usage`)."""

    def __init__(
        self, path: Path, prices: Mapping[str, Price] | None = None, *, writer: bool = True
    ) -> None:
        self.path = Path(path)
        self.prices = dict(prices or {})
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[UsageEvent, float | None] | None] = queue.SimpleQueue()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(SCHEMA)
            self._totals = {(t.model, t.upstream): t for t in self._read(db)}
        self._thread: threading.Thread | None = None
        if writer:
            self._thread = threading.Thread(target=self._write_loop, name="usage-writer")
            self._thread.daemon = True
            self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        # Several sidecars (an editor's and a `serve`) may share the file: wait for the lock.
        return sqlite3.connect(self.path, timeout=10.0)

    @staticmethod
    def _read(db: sqlite3.Connection) -> list[UsageTotals]:
        return [
            UsageTotals(
                model=model,
                upstream=upstream or None,
                requests=requests,
                errors=errors,
                prompt_tokens=prompt,
                completion_tokens=completion,
                latency_sum_s=latency_sum,
                latency_count=latency_count,
                cost=cost,
            )
            for (
                model,
                upstream,
                requests,
                errors,
                prompt,
                completion,
                latency_sum,
                latency_count,
                cost,
            ) in db.execute(TOTALS)
        ]

    # -- the sink ---------------------------------------------------------------------------

    def record(self, event: UsageEvent) -> None:
        """A `UsageSink`: never blocks on the disk (safe on the loop and the MLX worker)."""
        cost = cost_of(event, self.prices)
        with self._lock:
            key = (event.model, event.upstream)
            totals = self._totals.get(key)
            if totals is None:
                totals = self._totals[key] = UsageTotals(model=event.model, upstream=event.upstream)
            totals.add(event, cost)
        self._queue.put((event, cost))

    def totals(self) -> list[UsageTotals]:
        """Everything recorded in this file (this process's events included, written or not)."""
        with self._lock:
            return [t.model_copy() for _, t in sorted(self._totals.items(), key=_order)]

    # -- the writer -------------------------------------------------------------------------

    def _write_loop(self) -> None:
        db = self._connect()
        try:
            while True:
                first = self._queue.get()
                batch = [first]
                deadline = time.monotonic() + FLUSH_S
                while first is not None and (left := deadline - time.monotonic()) > 0:
                    try:
                        item = self._queue.get(timeout=left)
                    except queue.Empty:
                        break
                    batch.append(item)
                    if item is None:
                        break
                self._write(db, [item for item in batch if item is not None])
                if batch[-1] is None:
                    return
        finally:
            db.close()

    def _write(self, db: sqlite3.Connection, batch: list[tuple[UsageEvent, float | None]]) -> None:
        if not batch:
            return
        rows = [
            (
                time.strftime("%Y-%m-%d", time.gmtime(event.at or time.time())),
                event.model,
                event.upstream or "",
                event.endpoint,
                int(event.error),
                event.prompt_tokens,
                event.completion_tokens,
                event.latency_s,
                cost,
            )
            for event, cost in batch
        ]
        try:
            with db:
                db.executemany(UPSERT, rows)
        except sqlite3.Error as e:  # a full disk must not stop serving; the totals stay in memory
            log.error("could not write usage to %s: %s", self.path, e)

    def close(self) -> None:
        """Write what is queued and stop the writer."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10.0)
            self._thread = None


def _order(item: tuple[tuple[str, str | None], UsageTotals]) -> tuple[str, str]:
    (model, upstream), _ = item
    return (upstream or "", model)


def open_usage(path: Path, prices: Mapping[str, Price], enabled: bool = True) -> UsageStore | None:
    """The ledger for a serving process; None when turned off or when the file cannot be used
    (the sidecar still serves, with one error line saying why)."""
    if not enabled:
        return None
    try:
        return UsageStore(path, prices)
    except (OSError, sqlite3.Error) as e:
        log.error("usage is not recorded: cannot open %s: %s", path, e)
        return None

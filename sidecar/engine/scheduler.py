"""What runs next on the worker thread, for every runner: inline completion before chat before
bulk work, without starving anyone.

No library schedules for an editor: mlx_lm's BatchGenerator takes prompts first in, first out,
and `mlx_lm.server` admits requests only between 0.5 s decode budgets. So the order lives here:
- `WaitQueue`: the one priority queue (class, then arrival) every runner keeps its not yet
  started work in;
- `WaitTimes`: how long work of each class waited before it started (status and /metrics);
- `Scheduler.pick`: at each worker iteration, the runners to step: those holding the most
  urgent class of work, plus any runner that has waited `STARVE_STEPS` iterations, so a chat
  on one model keeps streaming while completions run on another.
Inside a runner, `TextRunner` orders its own prefill chunks the same way.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from sidecar.engine.requests import Priority

T = TypeVar("T")
STARVE_STEPS = 4  # a less urgent runner still gets one step in this many
RECENT = 200


class WaitQueue(Generic[T]):
    """Work not started yet, best first: by class, then by arrival."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, T]] = []
        self._arrival = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> Iterator[T]:
        return (item for _, _, item in self._heap)

    def push(self, priority: Priority, item: T) -> None:
        heapq.heappush(self._heap, (int(priority), next(self._arrival), item))

    def best_class(self) -> Priority | None:
        return Priority(self._heap[0][0]) if self._heap else None

    def push_front(self, priority: Priority, item: T) -> None:
        """Back at the head of its class (work taken out that could not start yet)."""
        heapq.heappush(self._heap, (int(priority), -next(self._arrival), item))

    def peek(self) -> T | None:
        return self._heap[0][2] if self._heap else None

    def pop(self) -> T:
        return heapq.heappop(self._heap)[2]

    def pop_class(self, priority: Priority, limit: int) -> list[T]:
        """Up to `limit` items of class `priority`, in arrival order, while that class is the
        best one waiting."""
        out: list[T] = []
        while self._heap and len(out) < limit and self._heap[0][0] == int(priority):
            out.append(heapq.heappop(self._heap)[2])
        return out

    def drop(self, gone: Callable[[T], bool]) -> list[T]:
        """Remove and return every item for which `gone` is true."""
        dropped = [item for _, _, item in self._heap if gone(item)]
        if dropped:
            self._heap = [entry for entry in self._heap if not gone(entry[2])]
            heapq.heapify(self._heap)
        return dropped

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for priority, _, _ in self._heap:
            name = Priority(priority).name.lower()
            out[name] = out.get(name, 0) + 1
        return out


def most_urgent(started: list[Priority], waiting: WaitQueue[Any]) -> Priority | None:
    """A runner's urgency: the most urgent class among its started work and its queue."""
    best = waiting.best_class()
    classes = started if best is None else [*started, best]
    return min(classes) if classes else None


@dataclass
class ClassWaits:
    count: int = 0
    total_s: float = 0.0
    recent: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total_s += seconds
        self.recent = [*self.recent[-RECENT + 1 :], seconds]


class WaitTimes:
    """Seconds from submission to start (first prefill chunk, first embedding slice), per class.
    Written by the worker thread, read by status on the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_class: dict[str, ClassWaits] = {p.name.lower(): ClassWaits() for p in Priority}

    def record(self, priority: Priority, seconds: float) -> None:
        with self._lock:
            self._by_class[priority.name.lower()].add(seconds)

    def snapshot(self) -> dict[str, dict[str, float | int | None]]:
        with self._lock:
            return {
                name: {
                    "count": w.count,
                    "sum_s": round(w.total_s, 6),
                    "recent_max_s": round(max(w.recent), 6) if w.recent else None,
                }
                for name, w in self._by_class.items()
            }


class Steppable(Protocol):
    def urgency(self) -> Priority | None: ...

    def step(self) -> None: ...


R = TypeVar("R", bound=Steppable)


class Scheduler:
    """Chooses which runners step at each worker iteration."""

    def __init__(self) -> None:
        self._tick = 0
        self._last: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()

    def pick(self, runners: list[R]) -> list[R]:
        """The runners to step now, most urgent first; empty when none has work."""
        ready = [(u, r) for r in runners if (u := r.urgency()) is not None]
        if not ready:
            return []
        self._tick += 1
        top = min(u for u, _ in ready)
        chosen = []
        for urgency, runner in sorted(ready, key=lambda ur: ur[0]):
            last = self._last.setdefault(runner, self._tick)
            if urgency == top or self._tick - last >= STARVE_STEPS:
                chosen.append(runner)
                self._last[runner] = self._tick
        return chosen

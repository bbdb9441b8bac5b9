"""What runs next on the worker thread, for every runner: inline completion first, and every
class of work a guaranteed share of the worker's time.

No library schedules for an editor: mlx_lm's BatchGenerator takes prompts first in, first out,
and `mlx_lm.server` admits requests only between 0.5 s decode budgets. So the order lives here:
- `WaitQueue`: the one priority queue (class, then arrival) every runner keeps its not yet
  started work in;
- `WaitTimes`: how long work of each class waited before it started (status and /metrics);
- `Scheduler`: which runner (one loaded model) steps next. Start-time fair queuing over the
  time each step took, weighted by the runner's most urgent class (`SHARE_WEIGHTS`): while a
  completion runs on one model and a chat streams on another, the completion gets 4/5 of the
  worker's time and the chat 1/5, whatever a step of each costs (a Qwen coder prefill chunk
  costs ~20 decode steps of SmolLM2; counting steps instead of seconds starved the chat). A
  runner that had no work starts level with the others, so it neither banks credit while idle
  nor waits to pay back what it used before; on a tie the more urgent class goes first. A
  completion is the exception, by a bounded lead: it starts ahead by what the others ran while
  it was idle, at most `COMPLETION_LEAD_S`, so the short generation after a pause in typing
  runs as if alone, and a chat waits at most that lead (plus a step) before its share resumes.
Inside a runner, `TextRunner` orders its own prefill chunks by class (`PrefillJob`s).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from sidecar.engine.requests import Priority

T = TypeVar("T")
RECENT = 200
# Shares of the worker's time while runners of these classes all have work: completion 4 :
# chat 1 keeps ghost text within 1.25x of its latency alone and a chat at a fifth of the time
# (the `completion_share` setting moves the first; `bench --suite typing` measures both).
SHARE_WEIGHTS = {Priority.COMPLETION: 4.0, Priority.CHAT: 1.0, Priority.BULK: 0.25}


# Seconds of the worker a completion may run before a streaming chat's share resumes, when the
# others ran at least that long while it was idle: most answers after a pause in typing take
# less (`bench --suite typing`), and the chat's longest gap stays under a second.
COMPLETION_LEAD_S = 0.5


def share_weights(completion_share: float) -> dict[Priority, float]:
    return {**SHARE_WEIGHTS, Priority.COMPLETION: completion_share}


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


def oldest_wait_s(waiting: Iterable[Any], priority: Priority, now: float) -> float:
    """How long the oldest of `waiting` (sequences: `submitted_at`, `started_at`, `request`,
    `done`) at least as urgent as `priority` has waited without starting, at `now`
    (`time.perf_counter()`); 0 when none waits."""
    waits = [
        now - seq.submitted_at
        for seq in waiting
        if seq.started_at is None and seq.request.priority <= priority and not seq.done
    ]
    return max(waits, default=0.0)


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
    """Chooses the runner that steps next; `charge` is told how long each step took."""

    def __init__(
        self,
        weights: dict[Priority, float] | None = None,
        completion_lead_s: float = COMPLETION_LEAD_S,
    ) -> None:
        self.weights = weights or SHARE_WEIGHTS
        self.completion_lead_s = completion_lead_s
        # Virtual time of each runner with work: seconds of steps divided by its weight.
        self._vtime: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()
        self._urgency: weakref.WeakKeyDictionary[object, Priority] = weakref.WeakKeyDictionary()
        self._charged_s = 0.0  # seconds of steps charged to any runner so far
        # `_charged_s` when each runner last had work: what the others ran since is its lead.
        self._idle_from: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()

    def pick(self, runners: list[R]) -> list[R]:
        """The runner to step now (a list of one); empty when none has work."""
        ready = [(u, r) for r in runners if (u := r.urgency()) is not None]
        for runner in [r for r in self._vtime if all(r is not x for _, x in ready)]:
            if any(runner is r for r in runners):  # idle now: it starts level when work comes
                del self._vtime[runner]
                self._idle_from[runner] = self._charged_s
        if not ready:
            return []
        known = [self._vtime[r] for _, r in ready if r in self._vtime]
        level = min(known, default=0.0)
        for urgency, runner in ready:
            if runner not in self._vtime:
                self._vtime[runner] = level - self._lead(runner, urgency)
            self._urgency[runner] = urgency
        _, runner = min(ready, key=lambda ur: (self._vtime[ur[1]], ur[0]))
        return [runner]

    def _lead(self, runner: object, urgency: Priority) -> float:
        """How far ahead of level a runner that had no work starts: a completion by what the
        others ran meanwhile (at most `completion_lead_s` of its own time), others not at all."""
        if urgency != Priority.COMPLETION:
            return 0.0
        others_ran = self._charged_s - self._idle_from.get(runner, -self.completion_lead_s)
        return min(self.completion_lead_s, others_ran) / self.weights[urgency]

    def charge(self, runner: object, seconds: float) -> None:
        """A step of `runner` took `seconds`: its virtual time moves by that over its weight."""
        seconds = max(seconds, 0.0)
        self._charged_s += seconds
        if runner in self._vtime:
            weight = self.weights[self._urgency.get(runner, Priority.CHAT)]
            self._vtime[runner] += seconds / weight

"""The one thread that owns every MLX call. Other threads hand it work through `call`; between
calls it steps the runners the scheduler picks (about one decode step each), so a request that
arrives while others decode starts at the next step."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from sidecar.engine.runner import Runner
from sidecar.engine.scheduler import Scheduler
from sidecar.mlx_cleanup import clear_thread_streams

log = logging.getLogger(__name__)
IDLE_WAIT_S = 1.0


class Worker:
    def __init__(self, runners: Callable[[], list[Runner]], on_idle: Callable[[], None]) -> None:
        self._runners = runners
        self._on_idle = on_idle
        self._inbox: queue.SimpleQueue[tuple[Callable[[], Any], Future] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="mlx-worker", daemon=True)
        self._stopping = False
        self.scheduler = Scheduler()
        self._stepping: set[int] = set()  # ids of runners inside their step() now

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._inbox.put(None)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run `fn` on the worker thread; the future holds its result or exception."""
        fut: Future = Future()
        if self._stopping:
            fut.set_exception(RuntimeError("engine is stopped"))
            return fut
        self._inbox.put((fn, fut))
        return fut

    def wake(self) -> None:
        self._inbox.put(None)

    def _handle(self, item: tuple[Callable[[], Any], Future] | None) -> None:
        if item is None:
            return
        fn, fut = item
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(fn())
        except BaseException as e:  # delivered to the caller; the worker keeps going
            fut.set_exception(e)

    def _step_runners(self) -> bool:
        """One step of each runner the scheduler picks; False when none has work. (A
        function, so no runner outlives it in a local.)"""
        chosen = self.scheduler.pick(self._runners())
        for runner in chosen:
            self._step(runner)
        return bool(chosen)

    def step_others(self, runner: Runner) -> None:
        """Step the runners the scheduler picks, except those in the middle of a step (like
        `runner`, which calls this between the chunks of a long step of its own)."""
        others = [r for r in self._runners() if id(r) not in self._stepping]
        for other in self.scheduler.pick(others):
            self._step(other)

    def _step(self, runner: Runner) -> None:
        self._stepping.add(id(runner))
        try:
            runner.step()
        except Exception:
            log.exception("runner step failed")
        finally:
            self._stepping.discard(id(runner))

    def _busy(self) -> bool:
        return any(r.urgency() is not None for r in self._runners())

    def _drain_inbox(self, wait: bool) -> None:
        """Run every call that arrived (waiting up to IDLE_WAIT_S for one when `wait`). A
        function, so a handled call (and the runner it holds) is not kept alive afterwards."""
        try:
            self._handle(self._inbox.get(timeout=IDLE_WAIT_S) if wait else self._inbox.get_nowait())
            while True:
                self._handle(self._inbox.get_nowait())
        except queue.Empty:
            pass

    def _run(self) -> None:
        while not self._stopping:
            self._drain_inbox(wait=not self._busy())
            if self._stopping:
                break
            if not self._step_runners():
                self._on_idle()
        # Fail what is still queued so no caller waits forever.
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is not None and not item[1].done():
                item[1].set_exception(RuntimeError("engine is stopped"))
        clear_thread_streams()

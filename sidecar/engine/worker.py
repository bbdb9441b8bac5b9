"""The one thread that owns every MLX call. Other threads hand it work through `call`; between
calls it steps the runners the scheduler picks (about one decode step each), so a request that
arrives while others decode starts at the next step.

Watchdog: the thread records when each call or step starts; `health_reason` (read by status and
`/health` from any thread, so no watchdog thread is needed) says what is wrong when one has not
returned within `watchdog_step_s`, or when the thread died."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from sidecar.engine.runner import Runner
from sidecar.engine.scheduler import Scheduler
from sidecar.mlx_cleanup import clear_thread_streams

log = logging.getLogger(__name__)
IDLE_WAIT_S = 1.0


class Worker:
    def __init__(
        self,
        runners: Callable[[], list[Runner]],
        on_idle: Callable[[], None],
        watchdog_step_s: float = 120.0,
        scheduler: Scheduler | None = None,
    ) -> None:
        self._runners = runners
        self._on_idle = on_idle
        self._inbox: queue.SimpleQueue[tuple[Callable[[], Any], Future] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="mlx-worker", daemon=True)
        self._stopping = False
        self.scheduler = scheduler or Scheduler()
        self._stepping: set[int] = set()  # ids of runners inside their step() now
        self._stepped_s = 0.0  # seconds of runner steps so far (to charge nested ones once)
        self.watchdog_step_s = watchdog_step_s
        self._task_started: float | None = None  # monotonic start of the outermost call/step
        self._task: str = ""
        self._depth = 0
        self._death: str | None = None
        self._reported: float | None = None  # the stuck task already logged

    # -- watchdog --

    def _begin(self, what: str) -> None:
        if self._depth == 0:
            self._task, self._task_started = what, time.monotonic()
        self._depth += 1

    def _end(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._task_started = None

    def health_reason(self) -> str | None:
        """Why the worker is unhealthy (any thread): None while it is fine."""
        if self._death is not None:
            return f"the MLX worker thread died: {self._death}"
        if self._thread.ident is not None and not self._thread.is_alive() and not self._stopping:
            return "the MLX worker thread died"
        started = self._task_started
        if started is None:
            return None
        running = time.monotonic() - started
        if running <= self.watchdog_step_s:
            return None
        reason = (
            f"a worker {self._task} has not returned for {running:.0f} s "
            f"(watchdog_step_s {self.watchdog_step_s:g})"
        )
        if self._reported != started:
            self._reported = started
            log.error("watchdog: %s", reason)
        return reason

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
        if self._death is not None:
            fut.set_exception(RuntimeError(f"the MLX worker thread died: {self._death}"))
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
        self._begin("call")
        try:
            fut.set_result(fn())
        except BaseException as e:  # delivered to the caller; the worker keeps going
            fut.set_exception(e)
        finally:
            self._end()

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
        self._begin(f"step of {runner.model_id}")
        started, nested_before = time.perf_counter(), self._stepped_s
        try:
            runner.step()
        except Exception:
            log.exception("runner step failed")
        finally:
            # charged its own time: not the other runners' steps it ran inside (step_others)
            own = time.perf_counter() - started - (self._stepped_s - nested_before)
            self.scheduler.charge(runner, own)
            self._stepped_s += own
            self._end()
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
        try:
            self._loop()
        except BaseException as e:  # the thread ends: say why (health), answer everyone
            self._death = f"{type(e).__name__}: {e}"
            log.exception("the MLX worker thread died")
            for runner in self._runners():
                try:
                    runner.fail_all(f"the MLX worker thread died: {self._death}")
                except Exception:
                    log.exception("could not fail the requests of %s", runner.model_id)
        finally:
            self._fail_queued()

    def _loop(self) -> None:
        while not self._stopping:
            self._drain_inbox(wait=not self._busy())
            if self._stopping:
                break
            if not self._step_runners():
                self._on_idle()

    def _fail_queued(self) -> None:
        """Fail what is still queued so no caller waits forever."""
        message = "engine is stopped" if self._death is None else f"worker died: {self._death}"
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is not None and not item[1].done():
                item[1].set_exception(RuntimeError(message))
        clear_thread_streams()

"""One completion's engine request, owned by the completion session rather than by the LSP
handler that asked for it: a `$/cancelRequest` cancels the handler's task, not this, so the
next keystroke's request can adopt a generation whose output the user is typing. A generation
nobody waits for is cancelled after a short grace (or at once, when a request needs another)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sidecar.completion.postprocess import postprocess
from sidecar.completion.prompt import CompletionPrompt
from sidecar.engine.engine import Engine
from sidecar.engine.requests import Delta, EngineError, GenerateRequest, Result

BLOCK_END = "\n\n\n"  # two blank lines: the next top-level definition follows
# How long a generation nobody waits for keeps running: the editor cancels the old request and
# sends the new one (after its debounce) within this.
ORPHAN_GRACE_S = 0.5


class Handle(Protocol):
    def cancel(self) -> None: ...


# `loop.call_later`: the session's timers (the orphan grace, the warm-up), injected by tests
# that fire them themselves instead of waiting on the wall clock.
Later = Callable[[float, Callable[[], None]], Handle]


def call_later(delay: float, fn: Callable[[], None]) -> Handle:
    return asyncio.get_running_loop().call_later(delay, fn)


@dataclass(frozen=True)
class Place:
    uri: str | None
    prefix: str
    suffix: str


class Generation:
    def __init__(
        self,
        engine: Engine,
        request: GenerateRequest,
        prompt: CompletionPrompt,
        place: Place,
        on_end: Callable[[Generation], None],
        later: Later = call_later,
    ) -> None:
        self.engine = engine
        self._later = later
        self.request = request
        self.prompt = prompt
        self.place = place
        self.mid_line = self.is_mid_line(place)
        self.text = ""  # generated so far
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.settled = False  # stopped because more tokens could not change the ghost text
        self.abandoned = False  # cancelled because nobody wanted it: its answer is not final
        self.adoptions = 0
        self._waiters = 0
        self._grace: Handle | None = None
        self._changed = asyncio.Event()
        self._first_token = asyncio.Event()
        self.first_token_at: float | None = None  # loop.time() of the first token
        self._on_end = on_end
        self.task = asyncio.create_task(self._run(), name=f"completion {request.request_id}")

    @staticmethod
    def is_mid_line(place: Place) -> bool:
        """Code follows the cursor on its line: the answer is the rest of this line."""
        return bool(place.suffix.split("\n", 1)[0].strip())

    @property
    def done(self) -> bool:
        return self.task.done()

    @property
    def final(self) -> bool:
        """Its answer is the whole answer for its place (cacheable)."""
        return self.result is not None and not self.abandoned and self.error is None

    async def _run(self) -> None:
        stopping = False
        try:
            async for event in self.engine.generate(self.request):
                if isinstance(event, Delta):
                    if self.first_token_at is None:
                        self.first_token_at = asyncio.get_running_loop().time()
                        self._first_token.set()
                    self.text += event.text
                    if not stopping and self._is_settled(self.text):
                        self.settled = True
                        stopping = self.engine.cancel(self.request.request_id)
                elif isinstance(event, Result):
                    if event.finish_reason == "error":
                        raise EngineError(event.error or "generation failed")
                    self.result = event
                self._changed.set()
        except BaseException as e:  # surfaced to the waiters
            self.error = e
            if not isinstance(e, asyncio.CancelledError | Exception):
                raise
        finally:
            self._changed.set()
            if self._grace is not None:
                self._grace.cancel()
            self._on_end(self)

    def _is_settled(self, generated: str) -> bool:
        """True once more tokens cannot change the ghost text: it no longer starts with the
        typed word, or post-processing already cut it short (a line left the block, repeated
        the next line, closed an unopened bracket). Mid-line answers end at the newline."""
        answer = self.prompt.answer(generated)
        if answer is None:  # wait while it is still a prefix of the typed word
            return not self.prompt.healed.startswith(generated)
        if self.mid_line or self.prompt.chat:
            return False
        return len(postprocess(answer, self.prompt.prefix, self.prompt.suffix)) < len(
            answer.rstrip()
        )

    def first_line_done(self) -> bool:
        """The answer's first line is complete (more tokens only add lines)."""
        answer = self.prompt.answer(self.text)
        return answer is not None and "\n" in answer.lstrip("\n")

    def written_past(self, typed: str) -> bool:
        """Its finished lines go past `typed` (what the user typed since its place): ghost
        text is there to show without waiting. Never for a mid-line answer, which is one line
        that is finished only when the generation ends."""
        if self.mid_line or not self.first_line_done():
            return False
        shown = self.ghost_text(complete_lines=True)
        return len(shown) > len(typed) and shown.startswith(typed)

    def keep(self) -> bool:
        """Someone typed through it without waiting: nobody waits for it, so its orphan grace
        starts again from now. True when it has ended."""
        self._regrace()
        return self.done

    def _regrace(self) -> None:
        """The orphan grace from now: none while someone waits or once it ended, else a new
        one (the old one cancelled)."""
        if self._grace is not None:
            self._grace.cancel()
        running = not self.done and not self._waiters
        self._grace = self._later(ORPHAN_GRACE_S, self.abandon) if running else None

    def serves(self, place: Place) -> str | None:
        """What the user typed since this generation's place, when its output so far starts
        with it (so its answer still applies there); else None."""
        if self.done or place.uri != self.place.uri or place.suffix != self.place.suffix:
            return None
        if not place.prefix.startswith(self.place.prefix):
            return None
        typed = place.prefix[len(self.place.prefix) :]
        return typed if self.text.startswith(self.prompt.healed + typed) else None

    def ghost_text(self, complete_lines: bool = False) -> str:
        """The ghost text for this generation's place from what it made so far;
        `complete_lines`: a multi-line answer still being made shows only its finished lines
        (a half-written second line is noise), a first line shows as far as it got."""
        answer = self.prompt.answer(self.text)
        if not answer:
            return ""
        if complete_lines and not self.mid_line and "\n" in answer.lstrip("\n"):
            answer = answer[: answer.rindex("\n")]
        return postprocess(answer, self.prompt.prefix, self.prompt.suffix, chat=self.prompt.chat)

    async def wait(self, budget_s: float, since: float) -> bool:
        """Wait until it ends, or until `budget_s` of decoding have passed: from its first token,
        or from `since` (loop time) when that is later (an adopted generation). The prefill is
        not counted: it is bounded by the prompt budgets, and a budget spent on it would leave
        a slow machine (the CPU backend) with no ghost text at all. True when it ended. Leaving
        (budget spent or the caller cancelled) with nobody else waiting starts the orphan grace."""
        self._waiters += 1
        self._regrace()
        loop = asyncio.get_running_loop()
        try:
            await self._until(self._first_token)
            if not self.done:
                started = max(self.first_token_at or since, since)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.shield(self.task), started + budget_s - loop.time()
                    )
            # Past the budget, still never a cut-off first line: a half-written line is ghost
            # text nobody can accept (measured: `bench --suite fim`, README).
            while not self.done and not self.first_line_done():
                self._changed.clear()
                await self._until(self._changed)
            return self.done
        finally:
            self._waiters -= 1
            self._regrace()

    async def _until(self, event: asyncio.Event) -> None:
        """Until `event` is set or the generation ends."""
        waiter: asyncio.Future[Any] = asyncio.ensure_future(event.wait())
        task: asyncio.Future[Any] = asyncio.shield(self.task)
        try:
            await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()

    def abandon(self) -> None:
        """Cancel it: nobody wants its answer."""
        if not self.done:
            self.abandoned = True
            self.engine.cancel(self.request.request_id)
            self.task.cancel()

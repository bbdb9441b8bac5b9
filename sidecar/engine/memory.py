"""The memory governor: one budget (`Settings.memory_budget_bytes`) for everything the engine
holds — the loaded models' weights (the pool measures them), the KV caches of the running
sequences, and the prompt caches kept for reuse.

A sequence's KV is *reserved* before it starts: its model's KV bytes per token (measured once
per model, see `kv_bytes_per_token`) × its prompt plus `max_tokens`, rounded up to the 256-token
steps mlx_lm's KVCache grows by. That is the most it can grow to, so admitted sequences never
push the total past the budget while they run. It is an estimate, not a reading of
`mx.get_active_memory()`: the active figure mixes every model, sequence and temporary of the
process, so it cannot say what one more request would cost before its KV exists. (The batch pads
every sequence to the longest one's length, so a mixed batch can hold somewhat more than the sum.)

Admission: a sequence whose reservation fits beside the weights and the other reservations
starts, evicting least recently used prompt caches first when they are in the way (they are only
a speed-up). One that does not fit waits in its queue until memory frees; one that does not fit
even with nothing else running is refused with `InsufficientMemory`, alone.

`KVAdmission` is a text runner's side of it; the vision runner asks the governor directly
(its prompt's length is known only once the images are processed).

Runs only on the engine's worker thread, except the read-only figures for status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

import mlx.core as mx
from mlx_lm.models.cache import LRUPromptCache, make_prompt_cache

from sidecar.engine.requests import Priority
from sidecar.engine.scheduler import WaitQueue
from sidecar.errors import InsufficientMemory, OutOfMemory
from sidecar.mlx_cleanup import release_memory

log = logging.getLogger(__name__)
KV_STEP = 256  # tokens mlx_lm's KVCache allocates at a time
PROMPT_CACHES_AT_REST = 2  # per text model, once idle for `rest_after_s`
MiB = 2**20
# MLX keeps freed buffers for reuse; keep at most this share of the budget so (with
# `mx.clear_cache()` when idle) memory goes back to the OS.
CACHE_LIMIT_SHARE = 0.1
# What MLX says when memory runs out: "[metal::malloc] Attempting to allocate N bytes ...",
# "[METAL] Command buffer execution failed: Insufficient Memory (...ErrorOutOfMemory)", CUDA's
# "out of memory", the allocator's std::bad_alloc.
ALLOCATION_FAILURE_MARKS = (
    "bad_alloc",
    "attempting to allocate",
    "unable to allocate",
    "insufficient memory",
    "out of memory",
    "outofmemory",
)


class Admission(Enum):
    START = "start"
    WAIT = "wait"
    REFUSE = "refuse"


def kv_bytes_per_token(model: Any) -> int:
    """KV cache bytes one token costs in `model`, measured: one token through a fresh prompt
    cache, whose buffers then hold one `KV_STEP` (any architecture, cache kind and dtype).
    0 when the model cannot be measured so (its requests are then not governed; logged)."""
    try:
        cache = make_prompt_cache(model)
        mx.eval(model(mx.array([[0]]), cache=cache))
        nbytes = sum(int(getattr(c, "nbytes", 0)) for c in cache)
    except Exception as e:
        log.warning("KV size of %s not measurable, its KV is not budgeted: %s", type(model), e)
        return 0
    del cache
    return max(1, -(-nbytes // KV_STEP))


def kv_tokens(prompt_tokens: int, max_tokens: int) -> int:
    """Tokens a sequence's KV cache can grow to, in the steps it is allocated by."""
    total = prompt_tokens + max_tokens
    return -(-total // KV_STEP) * KV_STEP


def is_allocation_failure(error: BaseException) -> bool:
    """Whether an exception from MLX says memory ran out (Metal/CUDA raise RuntimeError with
    such messages; the C++ allocator's std::bad_alloc reaches Python as MemoryError)."""
    if isinstance(error, MemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(m in text for m in ALLOCATION_FAILURE_MARKS)


def error_code(error: BaseException) -> str | None:
    """The machine code a failed step's requests end with."""
    return OutOfMemory.code if is_allocation_failure(error) else None


def failure_message(error: BaseException, what: str) -> str:
    """The user's message for a failed step."""
    if is_allocation_failure(error):
        return f"out of memory during {what}: {error}"
    return f"{what} failed: {error}"


class MemoryGovernor:
    def __init__(
        self,
        budget_bytes: int,
        weights_bytes: Callable[[], int],
        prompt_caches: Callable[[], list[LRUPromptCache]],
        rest_after_s: float = 30.0,
    ) -> None:
        self.budget_bytes = budget_bytes
        self.rest_after_s = rest_after_s  # quiet time before the prompt caches shrink
        self._weights = weights_bytes
        self._prompt_caches = prompt_caches
        self._lock = threading.Lock()  # status reads the reservations from the event loop
        self._kv: dict[int, tuple[Any, int]] = {}  # id(sequence) -> (sequence, bytes)
        self._images = 0  # decoded images of running vision requests (held off the worker)
        self.refused = 0
        self.evicted_prompt_cache_bytes = 0
        self._released = True  # MLX's buffer cache handed back since the last busy spell
        self._idle_since = time.monotonic()
        self._trimmed = True

    # -- at rest (worker thread) --

    def mark_busy(self) -> None:
        """Work was submitted: the next idle spell hands memory back again."""
        self._released = False

    def on_idle(self) -> None:
        """Nothing runs: hand MLX's buffer cache back once per busy spell (what a burst of
        requests grew stays otherwise), and after `rest_after_s` of quiet keep only the newest
        prompt caches' KV (the next keystroke's reuse), so memory at rest comes back near what
        the models hold."""
        now = time.monotonic()
        if not self._released:
            release_memory()
            self._released = True
            self._idle_since, self._trimmed = now, False
        if not self._trimmed and now - self._idle_since >= self.rest_after_s:
            for cache in self._prompt_caches():
                cache.trim_to(n_sequences=PROMPT_CACHES_AT_REST)
            release_memory()
            self._trimmed = True

    # -- figures --

    def weights_bytes(self) -> int:
        return self._weights()

    def kv_bytes(self) -> int:
        """Bytes reserved for the KV of sequences that have not finished."""
        with self._lock:
            for key in [k for k, (seq, _) in self._kv.items() if seq.done]:
                del self._kv[key]
            return sum(n for _, n in self._kv.values())

    def prompt_cache_bytes(self) -> int:
        return sum(c.nbytes for c in self._prompt_caches())

    def image_bytes(self) -> int:
        return self._images

    def used_bytes(self) -> int:
        return self.weights_bytes() + self.kv_bytes() + self.prompt_cache_bytes() + self._images

    # -- decoded images (any thread) --

    def hold_images(self, nbytes: int) -> None:
        """Count `nbytes` of decoded images against the budget until `release_images`; refuse
        (InsufficientMemory) when they do not fit beside the weights, the reserved KV and
        the other requests' images. Prompt caches are only a speed-up: not counted here."""
        with self._lock:
            kv = sum(n for seq, n in self._kv.values() if not seq.done)
            room = self.budget_bytes - self.weights_bytes() - kv - self._images
            if nbytes > room:
                self.refused += 1
                raise InsufficientMemory(
                    f"the request's images decode to {nbytes / MiB:.0f} MiB, but the memory "
                    f"budget of {self.budget_bytes / MiB:.0f} MiB leaves {max(room, 0) / MiB:.0f}"
                    " MiB now; send smaller images or fewer at once",
                    param="messages",
                )
            self._images += nbytes

    def release_images(self, nbytes: int) -> None:
        with self._lock:
            self._images = max(0, self._images - nbytes)

    # -- admission (worker thread) --

    def admit(self, seq: Any, need: int) -> Admission:
        """Reserve `need` KV bytes for `seq` (START), or say it must WAIT for memory, or be
        REFUSED because it could not fit even alone."""
        room = self.budget_bytes - self.weights_bytes() - self._images
        kv = self.kv_bytes()
        if need > room - kv:
            if need > room or kv == 0:  # nothing to wait for: it never fits
                self.refused += 1
                return Admission.REFUSE
            return Admission.WAIT
        self.make_room(need)
        with self._lock:
            self._kv[id(seq)] = (seq, need)
        return Admission.START

    def release(self, seq: Any) -> None:
        """`seq`'s KV left the batch as a prompt cache: its reservation ends now, not when
        `seq` is marked done, so that memory is not counted twice while the caches settle."""
        with self._lock:
            self._kv.pop(id(seq), None)

    def would_admit(self, need: int) -> bool:
        """Whether `admit` would not answer WAIT (cheap; the worker asks at every iteration)."""
        room = self.budget_bytes - self.weights_bytes()
        kv = self.kv_bytes()
        return need <= room - kv or need > room or kv == 0

    def refusal(self, need: int, prompt_tokens: int, max_tokens: int) -> InsufficientMemory:
        room = self.budget_bytes - self.weights_bytes()
        return InsufficientMemory(
            f"this request's KV cache needs about {need / MiB:.0f} MiB ({prompt_tokens} prompt "
            f"tokens + {max_tokens} max_tokens), but the memory budget of "
            f"{self.budget_bytes / MiB:.0f} MiB leaves {max(room, 0) / MiB:.0f} MiB beside the "
            "loaded models' weights; ask for fewer max_tokens, send a shorter prompt, or raise "
            "memory_budget_bytes",
            param="max_tokens",
        )

    def make_room(self, need: int) -> None:
        """Evict prompt caches (largest cache first, least recently used entries within it)
        until `need` more bytes fit in the budget."""
        over = self.used_bytes() + need - self.budget_bytes
        for cache in sorted(self._prompt_caches(), key=lambda c: c.nbytes, reverse=True):
            if over <= 0:
                break
            before = cache.nbytes
            cache.trim_to(n_bytes=max(0, before - over))
            freed = before - cache.nbytes
            over -= freed
            self.evicted_prompt_cache_bytes += freed
            if freed:
                log.info("evicted %.1f MiB of prompt cache to fit the memory budget", freed / MiB)

    def settle(self) -> None:
        """After a prompt cache grew: trim prompt caches back inside the budget."""
        self.make_room(0)


class KVAdmission:
    """A text runner's side of the governor: its model's KV bytes per token, and which waiting
    sequences may start. Without a governor (or a measurable model) everything is admitted."""

    def __init__(self, governor: MemoryGovernor | None, model: Any) -> None:
        self.governor = governor
        self.per_token = kv_bytes_per_token(model) if governor is not None else 0

    def need(self, seq: Any) -> int:
        """KV bytes `seq` can grow to (its reservation)."""
        return self.per_token * kv_tokens(len(seq.prompt_tokens), seq.max_tokens)

    def head_waits(self, waiting: WaitQueue[Any]) -> bool:
        """Whether the queue's head is waiting for memory (so the runner has nothing to do)."""
        head = waiting.peek()
        if head is None or self.governor is None or not self.per_token:
            return False
        if head.cancelled or head.done:
            return False
        return not self.governor.would_admit(self.need(head))

    def take(self, waiting: WaitQueue[Any], priority: Priority, limit: int) -> list[Any]:
        """Up to `limit` waiting sequences of class `priority` whose KV is reserved, in arrival
        order; stops at one that must wait for memory, answers one that could never fit."""
        if self.governor is None or not self.per_token:
            return waiting.pop_class(priority, limit)
        out: list[Any] = []
        while len(out) < limit and waiting.best_class() == priority:
            seq: Any = waiting.peek()
            need = self.need(seq)
            verdict = self.governor.admit(seq, need)
            if verdict is Admission.WAIT:
                break
            waiting.pop()
            if verdict is Admission.REFUSE:
                error = self.governor.refusal(need, len(seq.prompt_tokens), seq.max_tokens)
                log.warning("request %s refused: %s", seq.request_id, error)
                seq.finish("error", "", error=str(error), error_code=error.code)
                continue
            out.append(seq)
        return out

    def settle(self, seq: Any) -> None:
        """After `seq`'s KV became a prompt cache: its reservation ends, the caches fit again."""
        if self.governor is not None:
            self.governor.release(seq)
            self.governor.settle()


def apply_mlx_limits(budget_bytes: int) -> tuple[int, int]:
    """MLX's own limits from the budget: the memory limit (Metal waits or fails past it; the
    CPU backend takes it as a guideline) and the buffer cache cap. Returns the previous limits
    (they are process-wide: `restore_mlx_limits` puts them back when the engine closes)."""
    memory = mx.set_memory_limit(budget_bytes)
    cache = mx.set_cache_limit(int(budget_bytes * CACHE_LIMIT_SHARE))
    return memory, cache


def restore_mlx_limits(previous: tuple[int, int]) -> None:
    mx.set_memory_limit(previous[0])
    mx.set_cache_limit(previous[1])

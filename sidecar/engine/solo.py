"""The solo lane of a text runner: a greedy completion decoding alone leaves the decode batch
for prompt-lookup speculation (`speculative.py`), and goes back into the batch as soon as
another sequence arrives.

Why alone: mlx_lm's BatchGenerator has no speculation, and one forward pass over a draft is
cheap only while no other row shares it. Runs only on the engine's worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mlx_lm.generate import BatchGenerator
from mlx_lm.models.cache import trim_prompt_cache

from sidecar.engine.memory import error_code, failure_message
from sidecar.engine.prefill import Prefilled
from sidecar.engine.requests import FinishReason, Priority
from sidecar.engine.sequence import Sequence
from sidecar.engine.speculative import SoloSpeculator

log = logging.getLogger(__name__)
KeepKV = Callable[[Sequence, list[int], list[Any]], None]


class SoloLane:
    def __init__(self, model: Any, enabled: bool, stop_ids: list[int], keep_kv: KeepKV) -> None:
        self.model = model
        self.enabled = enabled
        self.stop_ids = stop_ids
        self.keep_kv = keep_kv  # where the KV of a sequence that ends here goes (prompt cache)
        self.current: tuple[Sequence, SoloSpeculator] | None = None
        self.drafted_tokens = 0
        self.accepted_tokens = 0

    def can_take(self, running: dict[int, Sequence]) -> bool:
        """Whether the batch's only sequence (nothing waits or prefills) may go solo."""
        if not self.enabled or len(running) != 1:
            return False
        seq = next(iter(running.values()))
        req = seq.request
        return (
            seq.priority == Priority.COMPLETION
            and req.temperature == 0
            and req.logprobs is None
            and seq.guide is None  # constrained: the draft would bypass the grammar's mask
            and seq.completion_tokens > 0  # in the decode batch, its KV complete
        )

    def take(self, generator: BatchGenerator, running: dict[int, Sequence]) -> None:
        """Take the batch's only sequence out of it."""
        ((uid, seq),) = running.items()
        cache, tokens = generator.remove([uid], return_prompt_caches=True)[uid]
        del running[uid]
        tokens = list(tokens)
        # The KV holds every token fed so far, the newest emitted one too; the token the
        # batch was computing next is dropped. Take the newest back out to feed it again.
        trim_prompt_cache(cache, 1)
        self.current = (seq, SoloSpeculator(self.model, cache, tokens[:-1], tokens[-1]))

    def step(self) -> int:
        """One speculative step; returns the tokens it generated."""
        assert self.current is not None
        seq, spec = self.current
        drafted, accepted = spec.drafted, spec.accepted
        try:
            tokens = spec.step()
        except Exception as e:
            log.exception("speculative step failed for %s", seq.request_id)
            seq.finish("error", error=failure_message(e, "generation"), error_code=error_code(e))
            self.current = None
            return 0
        self.drafted_tokens += spec.drafted - drafted
        self.accepted_tokens += spec.accepted - accepted
        for n, token in enumerate(tokens, 1):
            if seq.add_generated(token, None, self.stop_ids):
                self.keep_kv(seq, list(spec.cached), spec.cache)
                self.current = None
                return n
        return len(tokens)

    def give_back(self) -> tuple[Prefilled, int]:
        """Out of the lane, to go back into the batch: its KV and the token fed next."""
        assert self.current is not None
        seq, spec = self.current
        self.current = None
        return Prefilled(seq, spec.cache, list(spec.cached)), spec.last

    def drop(self, reason: FinishReason, error: str | None = None) -> None:
        """End the sequence in the lane, if any (cancelled, or every request failed)."""
        if self.current is not None:
            seq, spec = self.current
            self.current = None
            self.keep_kv(seq, list(spec.cached), spec.cache)
            seq.finish(reason, error=error)

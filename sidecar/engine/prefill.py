"""Chunked prefill: prompts of one class computed together, one chunk per worker step, so a
running stream waits at most one chunk and a more urgent prompt can go first.

mlx_lm's `PromptProcessingBatch` does the batched, padded forward passes into one merged KV
cache; BatchGenerator would also prefill, but a whole `prefill_step_size` at a time and in
arrival order, with no way to put another prompt first. A prompt leaves its job when only its
last token is left: that token goes to the BatchGenerator with the cache, which decodes.

Runs only on the engine's worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlx_lm.generate import PromptProcessingBatch, StopSequences

from sidecar.engine.requests import Priority
from sidecar.engine.sequence import Sequence

# While streams decode, one step's token budget is this many prefill chunks: the decode rows
# count first (a token each; their drafts have a cap of their own), the prefill job's rows share
# what is left, as vLLM's and SGLang's chunked prefill do; with no stream waiting on the step,
# each prompt row takes its whole chunk (a burst of prompts reaches its first tokens soonest).
# Decode rows and a prompt chunk run as two passes, not one padded pass: `bench --suite
# step-shape` measured the padded pass slower on all but the smallest shape here.
STEP_BUDGET_CHUNKS = 4
MIN_CHUNK = 8  # a prefilling prompt advances at least this much per step


def chunk_per_row(prefill_chunk: int, budget: int, decode_tokens: int, rows: int) -> int:
    """Prompt tokens each of a job's `rows` computes this step, when `decode_tokens` tokens
    of the decode batch share the step: at most `prefill_chunk` (the fastest chunk), and while
    any row decodes, all of them within `budget` tokens (`STEP_BUDGET_CHUNKS * prefill_chunk`)."""
    if not decode_tokens:
        return prefill_chunk
    return max(MIN_CHUNK, min(prefill_chunk, (budget - decode_tokens) // max(rows, 1)))


@dataclass
class Prefilled:
    """A prompt whose KV cache holds all but its last token."""

    seq: Sequence
    cache: list[Any]
    tokens: list[int]  # the tokens in `cache`


class PrefillJob:
    def __init__(
        self,
        model: Any,
        priority: Priority,
        seqs: list[Sequence],
        caches: list[list[Any]],
        rests: list[list[int]],
    ) -> None:
        """`caches[i]` holds `seqs[i]`'s reused prompt prefix; `rests[i]` is what is left of the
        prompt (at least its last token)."""
        self.priority = priority
        self.seqs = seqs
        self.rests = rests
        n = len(seqs)
        unused: list[Any] = [None] * n  # samplers: these prompts never sample here
        self.batch = PromptProcessingBatch(
            model,
            uids=list(range(n)),
            caches=caches,
            tokens=[
                s.prompt_tokens[: len(s.prompt_tokens) - len(r)]
                for s, r in zip(seqs, rests, strict=True)
            ],
            samplers=unused,
            logits_processors=[[] for _ in range(n)],
            stop_sequences=[StopSequences()] * n,
            max_tokens=[1] * n,
        )

    def __len__(self) -> int:
        return len(self.seqs)

    def join(self, other: PrefillJob) -> None:
        """Take `other`'s prompts into this job: from the next chunk on, one batched forward
        pass computes them all (mlx_lm's `PromptProcessingBatch.extend` pads the shorter caches),
        so prompts that arrive while a prefill runs do not wait for it to end."""
        self.batch.extend(other.batch)
        self.seqs += other.seqs
        self.rests += other.rests

    def tokens_left(self) -> int:
        return sum(len(r) - 1 for r in self.rests)

    def advance(self, chunk: int) -> list[Prefilled]:
        """Compute up to `chunk` more prompt tokens of every prompt in the job; return the
        prompts that are done (they leave the job)."""
        ready = self.take_ready()
        if self.seqs:
            feed = [r[: min(chunk, len(r) - 1)] for r in self.rests]
            self.batch.prompt(feed)
            self.rests = [r[len(f) :] for r, f in zip(self.rests, feed, strict=True)]
            ready += self.take_ready()
        return ready

    def take_ready(self) -> list[Prefilled]:
        return self._take([i for i, r in enumerate(self.rests) if len(r) == 1])

    def take(self, gone: list[Sequence]) -> list[Prefilled]:
        """Take `gone` out of the job (cancelled): their partial KV, to keep for reuse."""
        return self._take([i for i, s in enumerate(self.seqs) if s in gone])

    def _take(self, indices: list[int]) -> list[Prefilled]:
        if not indices:
            return []
        out = [
            Prefilled(self.seqs[i], self.batch.extract_cache(i), list(self.batch.tokens[i]))
            for i in indices
        ]
        keep = [i for i in range(len(self.seqs)) if i not in indices]
        self.batch.filter(keep)
        self.seqs = [self.seqs[i] for i in keep]
        self.rests = [self.rests[i] for i in keep]
        return out

"""Continuous batching for one text model: mlx_lm's BatchGenerator plus admission by priority,
cancellation at the next step, and per-sequence detokenizing and stop strings.

Runs only on the engine's worker thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from typing import Any

from mlx_lm.generate import BatchGenerator, StopSequences
from mlx_lm.models.cache import LRUPromptCache, trim_prompt_cache

from sidecar.engine.sampling import make_request_sampler
from sidecar.engine.sequence import Sequence

log = logging.getLogger(__name__)
PROMPT_CACHE_ENTRIES = 16
PROMPT_CACHE_BYTES = 512 << 20


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Every id that ends a turn: all EOS ids plus chat end markers the vocabulary has
    (Llama-3 needs both `<|end_of_text|>` and `<|eot_id|>`)."""
    ids = set(getattr(tokenizer, "eos_token_ids", None) or [])
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    for marker in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"):
        if marker in vocab:
            ids.add(vocab[marker])
    return sorted(ids)


class TextRunner:
    def __init__(
        self, model_id: str, model: Any, tokenizer: Any, max_batch: int, prefill_step: int
    ):
        self.model_id = model_id
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.stop_ids = stop_token_ids(tokenizer)
        self.generator = BatchGenerator(
            model,
            stop_tokens=[[t] for t in self.stop_ids],
            completion_batch_size=max_batch,
            prefill_batch_size=min(8, max_batch),
            prefill_step_size=prefill_step,
        )
        self.waiting: list[tuple[int, int, Sequence]] = []  # heap by (priority, arrival)
        self.running: dict[int, Sequence] = {}  # uid -> sequence
        self._arrival = itertools.count()
        self.max_batch_seen = 0
        self.generated_tokens = 0
        # KV caches of finished and cancelled sequences, found again by longest token prefix:
        # the next keystroke's completion (or the next chat turn) prefills only what is new.
        self.prompt_cache = LRUPromptCache(
            max_size=PROMPT_CACHE_ENTRIES, max_bytes=PROMPT_CACHE_BYTES
        )
        self.reused_prompt_tokens = 0

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    def submit(self, seq: Sequence) -> None:
        heapq.heappush(self.waiting, (int(seq.request.priority), next(self._arrival), seq))

    def cancel(self, request_id: str) -> bool:
        for _, _, seq in self.waiting:
            if seq.request_id == request_id:
                seq.cancelled = True
                return True
        for seq in self.running.values():
            if seq.request_id == request_id:
                seq.cancelled = True
                return True
        return False

    def _admit(self) -> None:
        while self.waiting and len(self.running) < self.max_batch:
            _, _, seq = heapq.heappop(self.waiting)
            if seq.cancelled:
                seq.finish("cancelled", "")
                continue
            req = seq.request
            sampler = make_request_sampler(req.temperature, req.top_p, req.seed)
            prompt = seq.prompt_tokens
            cache, rest = self.prompt_cache.fetch_nearest_cache(self.model_id, prompt)
            if cache is not None and not rest:  # exact hit: recompute the last token's logits
                trim_prompt_cache(cache, 1)
                rest = prompt[-1:]
            reused = len(prompt) - len(rest)
            try:
                (uid,) = self.generator.insert(
                    [rest],
                    max_tokens=[req.max_tokens],
                    caches=[cache],
                    all_tokens=[prompt[:reused]],
                    samplers=[sampler],
                    stop_sequences=[StopSequences([[t] for t in self.stop_ids])],
                )
            except Exception as e:  # bad request: fail it alone
                seq.finish("error", "", error=str(e))
                continue
            seq.uid = uid
            seq.cached_prompt_tokens = reused
            self.reused_prompt_tokens += reused
            self.running[uid] = seq

    def _remember(self, uids: list[int]) -> None:
        """Take sequences out of the batch, keeping their KV caches for reuse."""
        for cache, tokens in self.generator.remove(uids, return_prompt_caches=True).values():
            if cache is not None and len(tokens) > 1:
                self.prompt_cache.insert_cache(self.model_id, list(tokens), cache)

    def _drop_cancelled(self) -> None:
        gone = [uid for uid, seq in self.running.items() if seq.cancelled]
        if gone:
            self._remember(gone)
            for uid in gone:
                self.running.pop(uid).finish("cancelled")

    def step(self) -> None:
        """Admit waiting requests, run one BatchGenerator step, deliver its tokens."""
        self._drop_cancelled()
        self._admit()
        if not self.running:
            return
        self.max_batch_seen = max(self.max_batch_seen, len(self.running))
        try:
            _prompt_responses, responses = self.generator.next()
        except Exception as e:
            log.exception("batch step failed for %s", self.model_id)
            self.fail_all(f"generation failed: {e}")
            return
        finished = []
        for r in responses:
            if r.finish_reason is not None and r.prompt_cache is not None:
                self.prompt_cache.insert_cache(self.model_id, list(r.all_tokens), r.prompt_cache)
            seq = self.running.get(r.uid)
            if seq is None:
                continue
            self.generated_tokens += 1
            try:
                done = seq.add_token(r.token, r.logprobs, r.finish_reason)
            except Exception as e:  # e.g. a broken detokenizer: this request only
                log.exception("request %s failed", seq.request_id)
                seq.finish("error", error=str(e))
                done = True
            if done:
                finished.append(r.uid)
        stopped_early = [uid for uid in finished if uid in self.running]
        # Sequences the generator finished itself are gone from it already; those we stopped
        # (stop strings, errors) must be removed.
        natural = {r.uid for r in responses if r.finish_reason is not None}
        to_remove = [uid for uid in stopped_early if uid not in natural]
        if to_remove:
            self._remember(to_remove)
        for uid in finished:
            self.running.pop(uid, None)

    def fail_all(self, message: str) -> None:
        for seq in list(self.running.values()):
            seq.finish("error", error=message)
        if self.running:
            try:
                self.generator.remove(list(self.running))
            except Exception:
                log.exception("could not reset batch for %s", self.model_id)
        self.running.clear()
        while self.waiting:
            heapq.heappop(self.waiting)[2].finish("error", "", error=message)

    def close(self) -> None:
        self.fail_all("model unloaded")
        self.generator.close()

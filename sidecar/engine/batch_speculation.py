"""Prompt-lookup speculation inside the decode batch: every greedy row, completion or chat, may
carry draft tokens found in its own prompt and output (`speculative.find_draft`); one forward
pass over [B, 1 + K] tokens checks every row's draft at once, and each row keeps the longest
prefix of its draft that equals the model's argmax, plus the model's next token. The output is
plain greedy decoding's, token for token; a row whose drafts keep failing stops drafting for a
while (`DraftPolicy`).

mlx_lm's BatchGenerator has no speculation (mlx_lm.server turns batching off to speculate), so
this step is written here, over the generator's own generation batch: it does what
`GenerationBatch.next` does (the token fed this step is the one answered, the next token is
computed ahead), with more than one token per row. Rows accept different counts, so each row's
KV drops its rejected tail on its own: the batch's KV is right-aligned at one index with left
padding per row, and a row's rejected entries are rolled to its front, where they become
padding (what mlx_lm's `BatchKVCache.finalize` does for right-padded prompts, over the filled
part only).

It steps only when every row is plain: no logits processor (a grammar's mask would be skipped by
the draft), every KV a `BatchKVCache` (not a sliding window), no prompt waiting to join; else the
caller runs the generator's own step. Runs only on the engine's worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

import mlx.core as mx
from mlx_lm.generate import BatchGenerator, GenerationBatch
from mlx_lm.models.cache import BatchKVCache, dynamic_roll

from sidecar.engine.sequence import Sequence
from sidecar.engine.speculative import MAX_DRAFT, DraftPolicy

Response = GenerationBatch.Response
# Whether drafts pay depends on the device: on a GPU a forward pass over a few more tokens per row
# costs about what one token does; on a CPU (compute-bound at a batch of 8) it costs several
# times more. So the speculator measures both kinds of step at each batch size (tokens per
# second, a moving average) and drafts only while that pays, trying again one step in
# `EXPLORE_EVERY` (drafts that start to repeat may pay again).
MARGIN = 1.05  # drafting goes on while it beats plain steps by this much
# Tokens one verifying forward pass may carry (rows x (1 + draft)). Measured on 2 CPU cores
# (SmolLM2, code that repeats): drafts paid 1.65x at 2 rows and 1.1x at 4, and lost (0.87x)
# at 8, where the pass is compute-bound and the per-step timing above misses part of the cost
# (padding left behind, no overlap with the next step). A GPU's pass stays memory-bound far
# wider.
VERIFY_TOKENS = {"cpu": 12, "gpu": 128}
EXPLORE_EVERY = 16
SMOOTHING = 0.2
# Rejected tails become left padding; once every row has this much, it leaves the KV.
STRIP_PADDING = 64


def drop_tails(cache: list[Any], drop: list[int]) -> None:
    """Take the last `drop[i]` entries out of row i's KV in every layer."""
    least = min(drop)
    rest = [d - least for d in drop]
    for layer in cache:
        if least:
            layer.trim(least)
        if any(rest):
            shift = mx.array(rest)
            n = layer._idx
            # The row's newest `rest` entries wrap to its front and are masked as padding.
            layer.keys[..., :n, :] = dynamic_roll(layer.keys[..., :n, :], shift[:, None], axis=2)
            layer.values[..., :n, :] = dynamic_roll(
                layer.values[..., :n, :], shift[:, None], axis=2
            )
            layer.offset = layer.offset - shift
            layer.left_padding = layer.left_padding + shift
    # Every layer has the same padding: read it once (a sync), not per layer.
    common = min(cast(list[int], cache[0].left_padding.tolist()))
    if common < STRIP_PADDING:
        return
    for layer in cache:  # padding every row has: out of the KV (as `filter` does)
        layer.keys = layer.keys[..., common:, :]
        layer.values = layer.values[..., common:, :]
        layer._idx -= common
        layer.left_padding = layer.left_padding - common


class BatchSpeculator:
    def __init__(self, model: Any) -> None:
        self.model = model
        self.policies: dict[int, DraftPolicy] = {}  # uid -> its drafting
        self.drafted = 0
        self.accepted = 0
        self.steps = 0  # speculative steps taken
        self.rates: dict[tuple[bool, int], float] = {}  # (speculative, rows) -> tokens/s
        self._held_back = 0

    def observe(self, speculative: bool, rows: int, tokens: int, seconds: float) -> None:
        """A decode step's yield: `tokens` answered for `rows` rows in `seconds`."""
        if seconds <= 0:
            return
        key = (speculative, rows)
        rate = tokens / seconds
        old = self.rates.get(key)
        self.rates[key] = rate if old is None else old + SMOOTHING * (rate - old)

    def pays(self, rows: int) -> bool:
        """Whether a speculative step is worth trying at this batch size now."""
        spec, plain = self.rates.get((True, rows)), self.rates.get((False, rows))
        if spec is None or plain is None or spec >= plain * MARGIN:
            return True
        self._held_back += 1
        if self._held_back >= EXPLORE_EVERY:
            self._held_back = 0
            return True
        return False

    def forget(self, uids: list[int]) -> None:
        for uid in uids:
            self.policies.pop(uid, None)

    @staticmethod
    def batch_of(generator: BatchGenerator) -> GenerationBatch | None:
        """The generator's decode batch when a speculative step may run on it."""
        batch = getattr(generator, "_generation_batch", None)
        waiting = getattr(generator, "_unprocessed_sequences", None)
        prompts = getattr(generator, "_prompt_batch", None)
        if batch is None or waiting is None or prompts is None:  # another mlx_lm: plain steps
            return None
        if waiting or len(prompts) or not len(batch) or batch._next_tokens is None:
            return None
        if any(batch.logits_processors) or not batch.prompt_cache:
            return None
        if not all(type(c) is BatchKVCache and c.keys is not None for c in batch.prompt_cache):
            return None
        return batch

    def step(
        self, generator: BatchGenerator, running: Mapping[int, Sequence]
    ) -> list[Response] | None:
        """One decode step checking the drafts of the greedy rows of `running` (uid ->
        sequence); None when no row has a draft (the caller steps the generator)."""
        greedy = {
            uid
            for uid, seq in running.items()
            if seq.request.temperature == 0 and seq.request.logprobs is None and seq.guide is None
        }
        batch = self.batch_of(generator) if greedy else None
        if batch is None or not self.pays(len(batch)):
            return None
        rows = len(batch)
        mx.eval(batch._next_tokens)  # the step before's forward pass is not this step's cost
        started = time.perf_counter()
        with mx.stream(generator.stream):
            responses = self._step(batch, greedy)
        if responses is not None:
            self.observe(True, rows, len(responses), time.perf_counter() - started)
        return responses

    def _step(self, batch: GenerationBatch, greedy: set[int]) -> list[Response] | None:
        fed_array = batch._next_tokens  # evaluated by `step`
        fed = cast(list[int], fed_array.tolist())
        drafts: list[list[int]] = []
        for i, uid in enumerate(batch.uids):
            sampler = batch.samplers[i] if batch.samplers else None
            if uid not in greedy or sampler not in (None, batch.fallback_sampler):
                drafts.append([])
                continue
            policy = self.policies.setdefault(uid, DraftPolicy())
            left = batch.max_tokens[i] - batch._num_tokens[i] - 1  # room after the fed token
            drafts.append(policy.draft([*batch.tokens[i], fed[i]], min(left, MAX_DRAFT)))
        budget = VERIFY_TOKENS["cpu" if mx.default_device() == mx.cpu else "gpu"]
        width = min(max(len(d) for d in drafts), budget // len(drafts) - 1)
        if width <= 0:
            return None
        drafts = [d[:width] for d in drafts]
        rows = [[fed[i], *d, *[fed[i]] * (width - len(d))] for i, d in enumerate(drafts)]
        logits = self.model(mx.array(rows), cache=batch.prompt_cache)
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        picks = mx.argmax(logprobs, axis=-1)
        mx.eval(picks)
        greedy_picks = cast(list[list[int]], picks.tolist())

        kept: list[int] = []  # per row, the drafted tokens accepted
        next_tokens: list[mx.array] = []
        next_logprobs: list[mx.array] = []
        for i, draft in enumerate(drafts):
            n = 0
            while n < len(draft) and draft[n] == greedy_picks[i][n]:
                n += 1
            kept.append(n)
            row_logprobs = logprobs[i, n]
            sampler = batch.samplers[i] if batch.samplers else None
            chosen = (sampler or batch.fallback_sampler)(row_logprobs[None])
            next_tokens.append(chosen.reshape(1))
            next_logprobs.append(row_logprobs)
            if draft:
                self.drafted += len(draft)
                self.accepted += n
                self.policies[batch.uids[i]].adapt(n, len(draft))
        drop_tails(batch.prompt_cache, [width - n for n in kept])
        mx.eval([c.state for c in batch.prompt_cache])  # moving the tails is this step's cost
        self.steps += 1

        answered_logprobs = batch._next_logprobs
        batch._current_tokens = cast(Any, fed_array)
        batch._next_tokens = mx.concatenate(next_tokens)
        batch._next_logprobs = next_logprobs
        mx.async_eval(batch._next_tokens, batch._next_logprobs)
        return self._respond(batch, fed, drafts, kept, answered_logprobs, logprobs)

    def _respond(
        self,
        batch: GenerationBatch,
        fed: list[int],
        drafts: list[list[int]],
        kept: list[int],
        answered: list[mx.array],
        logprobs: mx.array,
    ) -> list[Response]:
        """The step's tokens, per row in order (the fed one, then its accepted draft), ending
        rows as `GenerationBatch.next` does: at their length or a stop sequence."""
        responses: list[Response] = []
        keep: list[int] = []
        for i, uid in enumerate(batch.uids):
            tokens = [fed[i], *drafts[i][: kept[i]]]
            batch.tokens[i].extend(tokens)  # what the row's KV holds
            finish: str | None = None
            for j, token in enumerate(tokens):
                batch._num_tokens[i] += 1
                if batch._num_tokens[i] >= batch.max_tokens[i]:
                    finish = "length"
                if batch._matchers[i].advance(token):
                    finish = "stop"
                row_logprobs = answered[i] if j == 0 else logprobs[i, j - 1]
                ended = finish is not None
                responses.append(
                    Response(
                        uid=uid,
                        token=token,
                        logprobs=row_logprobs,
                        finish_reason=finish,
                        prompt_cache=batch.extract_cache(i) if ended else None,
                        all_tokens=batch.tokens[i] if ended else None,
                    )
                )
                if ended:
                    break
            if finish is None:
                keep.append(i)
            else:
                self.policies.pop(uid, None)
        if len(keep) < len(batch.uids):
            batch.filter(keep)
        return responses

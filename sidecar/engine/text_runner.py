"""Continuous batching for one text model, completion first.

Each worker step: one prefill chunk of the most urgent prompt job (see `prefill.py`), then one
decode step of mlx_lm's BatchGenerator for every running sequence, within one token budget (the
decode rows count first, the job's rows share the rest). Prompts that finish their prefill join
the decode batch at that step. So:
- an inline completion starts at the next step whatever the batch holds (it may go past
  `max_batch`, by up to `COMPLETION_RESERVE`), and its prefill goes before any chat's;
- prompts of one class prefill together, up to `PREFILL_BATCH`: those that arrive while their
  class's job runs join it at the next chunk;
- a chat or bulk prompt prefills a chunk at a time; while completions run, it gets one chunk
  in `LOW_CHUNK_EVERY` steps (it is paused, its KV kept, in between);
- running streams decode at every step, so none waits longer than one chunk;
- greedy rows check prompt-lookup drafts in that step (`batch_speculation.py`), and a greedy
  completion decoding alone leaves the batch to speculate on its own (`solo.py`).
Cancelled sequences leave at the next step; their KV goes to the prompt cache, so the next
keystroke's completion prefills only what is new.

Runs only on the engine's worker thread.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import mlx.core as mx
from mlx_lm.generate import BatchGenerator, StopSequences
from mlx_lm.models.cache import LRUPromptCache, make_prompt_cache, trim_prompt_cache

from sidecar.engine.batch_speculation import BatchSpeculator
from sidecar.engine.constraints import Guide
from sidecar.engine.memory import KVAdmission, MemoryGovernor, error_code, failure_message
from sidecar.engine.prefill import STEP_BUDGET_CHUNKS, Prefilled, PrefillJob, chunk_per_row
from sidecar.engine.requests import GenerateRequest, Priority
from sidecar.engine.runner import RunnerStats
from sidecar.engine.sampling import make_request_sampler
from sidecar.engine.scheduler import WaitQueue, WaitTimes, most_urgent
from sidecar.engine.sequence import Sequence, Sink
from sidecar.engine.solo import SoloLane
from sidecar.errors import ImagesNotSupported
from sidecar.models.limits import context_length_of, stop_token_ids, vocab_size_of

log = logging.getLogger(__name__)
PROMPT_CACHE_ENTRIES = 16
PROMPT_CACHE_BYTES = 512 << 20
COMPLETION_RESERVE = 8  # completions admitted past a full batch
PREFILL_BATCH = 8  # prompts of one class prefilled together
# While a completion runs, a less urgent prompt prefills one chunk in this many steps.
LOW_CHUNK_EVERY = 4


class TextRunner:
    def __init__(
        self,
        model_id: str,
        model: Any,
        tokenizer: Any,
        max_batch: int,
        prefill_chunk: int,
        waits: WaitTimes | None = None,
        speculative: bool = True,
        governor: MemoryGovernor | None = None,
    ) -> None:
        self.model_id = model_id
        self.admission = KVAdmission(governor, model)
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.prefill_chunk = prefill_chunk
        self.step_budget = STEP_BUDGET_CHUNKS * prefill_chunk  # tokens a step computes at most
        self.waits = waits or WaitTimes()
        self.stop_ids = stop_token_ids(tokenizer)
        self._stops = StopSequences([[t] for t in self.stop_ids])
        capacity = max_batch + COMPLETION_RESERVE
        # The generator only decodes: every prompt reaches it prefilled but for its last token.
        self.generator = BatchGenerator(
            model,
            stop_tokens=[[t] for t in self.stop_ids],
            completion_batch_size=capacity,
            prefill_batch_size=capacity,
            prefill_step_size=prefill_chunk,
        )
        self.waiting: WaitQueue[Sequence] = WaitQueue()
        self.jobs: list[PrefillJob] = []
        self.running: dict[int, Sequence] = {}  # uid -> sequence
        # A greedy completion decoding alone leaves the batch for prompt-lookup speculation.
        self.lane = SoloLane(model, speculative, self.stop_ids, self._keep_kv)
        # Greedy rows of the batch check prompt-lookup drafts in the batch's own step.
        self.speculator = BatchSpeculator(model)
        self._low_chunk_wait = 0
        self.max_batch_seen = 0
        self.generated_tokens = 0
        self.prefilled_tokens = 0
        # KV caches of finished and cancelled sequences, found again by longest token prefix:
        # the next keystroke's completion (or the next chat turn) prefills only what is new.
        self.prompt_cache = LRUPromptCache(
            max_size=PROMPT_CACHE_ENTRIES, max_bytes=PROMPT_CACHE_BYTES
        )
        self.reused_prompt_tokens = 0
        self.limits = (context_length_of(model), vocab_size_of(model, tokenizer))

    # -- what the worker and the engine read --

    @property
    def solo(self) -> Sequence | None:
        """The completion speculating alone, if one is."""
        return self.lane.current[0] if self.lane.current is not None else None

    @property
    def drafted_tokens(self) -> int:
        return self.lane.drafted_tokens + self.speculator.drafted

    @property
    def accepted_tokens(self) -> int:
        return self.lane.accepted_tokens + self.speculator.accepted

    def urgency(self) -> Priority | None:
        started = [s.priority for s in self.running.values()] + [j.priority for j in self.jobs]
        if self.lane.current is not None:
            started.append(self.lane.current[0].priority)
        if self.admission.head_waits(self.waiting):  # for memory: nothing to do for it now
            return min(started) if started else None
        return most_urgent(started, self.waiting)

    def stats(self) -> RunnerStats:
        return RunnerStats(
            model_id=self.model_id,
            kind="text",
            waiting=self.waiting.counts(),
            prefilling=sum(len(j) for j in self.jobs),
            running=len(self.running) + (self.lane.current is not None),
            max_batch_seen=self.max_batch_seen,
            reused_prompt_tokens=self.reused_prompt_tokens,
            prefilled_tokens=self.prefilled_tokens,
            drafted_tokens=self.drafted_tokens,
            accepted_tokens=self.accepted_tokens,
        )

    # -- building a request (event loop thread; no MLX) --

    def accept(self, request: GenerateRequest) -> None:
        if request.images:
            raise ImagesNotSupported(f"model {self.model_id!r} does not take images")

    def new_job(
        self, request: GenerateRequest, sink: Sink, images: list[Any], guide: Guide | None
    ) -> Sequence:
        seq = Sequence.for_text(request, self.model_id, self.tokenizer, sink, self.limits)
        seq.guide = guide
        return seq

    # -- worker thread --

    def submit(self, seq: Sequence) -> None:
        self.waiting.push(seq.priority, seq)

    # -- one step --

    def step(self) -> None:
        """One prefill chunk of the most urgent job, then one decode step."""
        self._drop_cancelled()
        try:
            self._prefill_chunk()
        except Exception as e:
            log.exception("prefill failed for %s", self.model_id)
            message = failure_message(e, "prompt processing")
            for job in self.jobs:
                for seq in job.seqs:
                    seq.finish("error", "", error=message, error_code=error_code(e))
            self.jobs.clear()
            mx.clear_cache()
        if self.lane.current is not None:
            if not self.waiting and not self.jobs and not self.running:
                self.generated_tokens += self.lane.step()
                return
            part, last = self.lane.give_back()  # others arrived: back into the batch
            self._insert(part, last=last)
        elif not self.waiting and not self.jobs and self.lane.can_take(self.running):
            self.lane.take(self.generator, self.running)
            self.generated_tokens += self.lane.step()
            return
        if self.running:
            self._decode()

    def _drop_cancelled(self) -> None:
        for seq in self.waiting.drop(lambda s: s.cancelled or s.done):
            seq.finish("cancelled", "")
        for job in self.jobs:
            gone = [s for s in job.seqs if s.cancelled]
            for part in job.take(gone):
                self._keep_kv(part.seq, part.tokens, part.cache)
                part.seq.finish("cancelled", "")
        self.jobs = [j for j in self.jobs if len(j)]
        if self.lane.current is not None and self.lane.current[0].cancelled:
            self.lane.drop("cancelled")
        gone_uids = [uid for uid, seq in self.running.items() if seq.cancelled]
        if gone_uids:
            self._remember(gone_uids)
            for uid in gone_uids:
                self.running.pop(uid).finish("cancelled")

    def _room(self, priority: Priority) -> int:
        """How many more sequences of `priority` may start now."""
        used = len(self.running) + sum(len(j) for j in self.jobs)
        limit = self.max_batch + (COMPLETION_RESERVE if priority == Priority.COMPLETION else 0)
        return max(0, limit - used)

    def _pick_job(self) -> PrefillJob | None:
        """The job to advance: a new one when the waiting head is more urgent than every job
        (and has room), else the most urgent, oldest job."""
        best_job = min(self.jobs, key=lambda j: j.priority, default=None)
        head = self.waiting.best_class()
        if best_job is not None and head == best_job.priority:
            self._join(best_job)
            head = self.waiting.best_class()
        while head is not None and (best_job is None or head < best_job.priority):
            room = self._room(head)
            if room == 0:
                break
            admitted = self.admission.take(self.waiting, head, min(room, PREFILL_BATCH))
            if not admitted and self.waiting.best_class() == head:
                break  # the head waits for memory
            job = self._start(head, admitted)
            if job is not None:
                self.jobs.append(job)
                return job
            head = self.waiting.best_class()
        return best_job

    def _join(self, job: PrefillJob) -> None:
        """Prompts of `job`'s class that arrived while it runs join it (a burst of N prompts
        costs about one batched prefill, not N prefills in turn)."""
        room = min(self._room(job.priority), PREFILL_BATCH - len(job))
        if room <= 0:
            return
        admitted = self.admission.take(self.waiting, job.priority, room)
        joining = self._start(job.priority, admitted)
        if joining is not None:
            job.join(joining)

    def _start(self, priority: Priority, seqs: list[Sequence]) -> PrefillJob | None:
        """Claim `seqs` and find their reusable KV; those with nothing left to prefill join
        the decode batch now, the others form a prefill job."""
        caches, rests, members = [], [], []
        for seq in seqs:
            if not seq.claim():
                continue
            self.waits.record(priority, seq.started_at - seq.submitted_at)  # type: ignore[operator]
            try:  # everything from here to the batch is this request's alone to fail
                req = seq.request
                seq.sampler = make_request_sampler(req.temperature, req.top_p, req.seed)
                prompt = seq.prompt_tokens
                cache, rest = self.prompt_cache.fetch_nearest_cache(self.model_id, prompt)
                if cache is not None and not rest:  # exact hit: recompute the last token
                    trim_prompt_cache(cache, 1)
                    rest = prompt[-1:]
                seq.cached_prompt_tokens = len(prompt) - len(rest)
                self.reused_prompt_tokens += seq.cached_prompt_tokens
                if len(rest) == 1:
                    fresh = cache or make_prompt_cache(self.model)
                    self._insert(Prefilled(seq, fresh, prompt[:-1]))
                    continue
                caches.append(cache or make_prompt_cache(self.model))
                rests.append(rest)
                members.append(seq)
            except Exception as e:
                log.warning("request %s could not start: %s", seq.request_id, e)
                seq.finish("error", "", error=str(e))
        if not members:
            return None
        return PrefillJob(self.model, priority, members, caches, rests)

    def _prefill_chunk(self) -> None:
        job = self._pick_job()
        if job is None:
            return
        decoding = min((s.priority for s in self.running.values()), default=None)
        if decoding is not None and decoding < job.priority:
            # A more urgent sequence is decoding: this prompt waits, a chunk now and then.
            self._low_chunk_wait += 1
            if self._low_chunk_wait < LOW_CHUNK_EVERY:
                return
        self._low_chunk_wait = 0
        before, decode_tokens = job.tokens_left(), len(self.running)  # a token per decode row
        chunk = chunk_per_row(self.prefill_chunk, self.step_budget, decode_tokens, len(job))
        done = job.advance(chunk)
        self.prefilled_tokens += before - job.tokens_left()
        for part in done:
            self._insert(part)
        if not len(job):
            self.jobs.remove(job)

    def _insert(self, part: Prefilled, last: int | None = None) -> None:
        """Into the decode batch: `part.cache` holds all but the token fed next (the prompt's
        last one, or `last`)."""
        seq = part.seq
        feed = [last] if last is not None else seq.prompt_tokens[-1:]
        try:
            (uid,) = self.generator.insert(
                [feed],
                max_tokens=[seq.max_tokens],
                caches=[part.cache],
                all_tokens=[part.tokens],
                samplers=[seq.sampler],
                # A constrained sequence's guide masks its logits row; the others get none.
                logits_processors=[[seq.guide] if seq.guide is not None else []],
                stop_sequences=[self._stops],
            )
        except Exception as e:
            seq.finish("error", "", error=str(e))
            return
        seq.uid = uid
        self.running[uid] = seq

    def _decode(self) -> None:
        self.max_batch_seen = max(self.max_batch_seen, len(self.running))
        try:
            drafting = self.running if self.lane.enabled else {}
            responses = self.speculator.step(self.generator, drafting)
            if responses is None:
                rows, started = len(self.running), time.perf_counter()
                _prompt_responses, responses = self.generator.next()
                self.speculator.observe(False, rows, len(responses), time.perf_counter() - started)
        except Exception as e:
            log.exception("batch step failed for %s", self.model_id)
            self.fail_running(failure_message(e, "generation"), error_code(e))
            mx.clear_cache()
            return
        finished = []
        for r in responses:  # a speculative step answers a row with several tokens, in order
            seq = self.running.get(r.uid)
            if r.finish_reason is not None and r.prompt_cache is not None and r.all_tokens:
                self._keep_kv(seq, list(r.all_tokens), r.prompt_cache)
            if seq is None or r.uid in finished:
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
        # Sequences the generator finished itself are gone from it already; those we stopped
        # (stop strings, errors) must be removed.
        natural = {r.uid for r in responses if r.finish_reason is not None}
        to_remove = [uid for uid in finished if uid in self.running and uid not in natural]
        if to_remove:
            self._remember(to_remove)
        self.speculator.forget(finished)
        for uid in finished:
            self.running.pop(uid, None)

    # -- KV reuse --

    def _keep_kv(self, seq: Sequence | None, tokens: list[int], cache: list[Any]) -> None:
        if cache and len(tokens) > 1:
            # A cache taken out of the batch is a lazy slice of the whole batch's buffers:
            # evaluated now it is a copy of its own, else each kept entry pins a batch's KV
            # (measured: 243 MiB held where the entries counted 12 MiB).
            mx.eval([c.state for c in cache])
            self.prompt_cache.insert_cache(self.model_id, tokens, cache)
            self.admission.settle(seq)

    def _remember(self, uids: list[int]) -> None:
        """Take sequences out of the batch, keeping their KV caches for reuse."""
        self.speculator.forget(uids)
        kept = self.generator.remove(uids, return_prompt_caches=True)
        for uid, (cache, tokens) in kept.items():
            if cache is not None:
                self._keep_kv(self.running.get(uid), list(tokens), cache)

    # -- ending --

    def fail_running(self, message: str, code: str | None = None) -> None:
        """End the decode batch's sequences with an error (a failed batch step); the queued
        and prefilling ones keep their turn."""
        for seq in list(self.running.values()):
            seq.finish("error", error=message, error_code=code)
        if self.running:
            try:
                self.generator.remove(list(self.running))
            except Exception:
                log.exception("could not reset batch for %s", self.model_id)
        self.running.clear()

    def fail_all(self, message: str) -> None:
        self.lane.drop("error", message)
        self.fail_running(message)
        for job in self.jobs:
            for seq in job.seqs:
                seq.finish("error", "", error=message)
        self.jobs.clear()
        for seq in self.waiting.drop(lambda s: True):
            seq.finish("error", "", error=message)

    def close(self) -> None:
        self.fail_all("model unloaded")
        self.generator.close()

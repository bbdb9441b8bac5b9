"""One generation request's state while it runs on the worker thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any, cast

import mlx.core as mx

from sidecar.engine.constraints import Guide
from sidecar.engine.detokenize import exact_detokenizer
from sidecar.engine.messages import encode
from sidecar.engine.requests import (
    DEFAULT_MAX_TOKENS,
    Delta,
    FinishReason,
    GenerateRequest,
    Priority,
    Result,
    TokenLogprob,
)
from sidecar.engine.stops import StopStrings
from sidecar.errors import PromptTooLongError
from sidecar.models.limits import check_token_ids

Sink = Callable[[Delta | Result], None]


@dataclass
class Sequence:
    request: GenerateRequest
    model_id: str
    prompt_tokens: list[int]
    detokenizer: Any
    sink: Sink
    tokenizer: Any = None
    max_tokens: int = 0  # the request's, or what the context leaves (0: the request's)
    uid: int | None = None
    sampler: Any = None  # built when the sequence starts (worker thread)
    guide: Guide | None = None  # the request's constraint, compiled for this model
    submitted_at: float = field(default_factory=time.perf_counter)
    started_at: float | None = None  # left the wait queue
    first_token_at: float | None = None
    last_token_at: float | None = None
    max_token_gap_s: float = 0.0  # longest wait between two tokens
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens whose KV cache was reused, not recomputed
    emitted: int = 0  # characters of detokenizer.text already sent
    cancelled: bool = False
    done: bool = False
    stops: StopStrings = field(init=False)
    pending_logprobs: list[TokenLogprob] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.stops = StopStrings(self.request.stop)
        self.max_tokens = self.max_tokens or self.request.max_tokens or DEFAULT_MAX_TOKENS

    @classmethod
    def for_text(
        cls,
        request: GenerateRequest,
        model_id: str,
        tokenizer: Any,
        sink: Sink,
        limits: tuple[int, int],
    ) -> Sequence:
        """A text model's sequence for `request`, its prompt checked against the model's
        `limits` (context length, vocabulary size)."""
        context, vocab = limits
        prompt = request.prompt
        ids = prompt if isinstance(prompt, list) else encode(tokenizer, prompt)
        check_token_ids(ids, vocab)
        room = context - len(ids)
        # No limit asked: the default, cut to the context; a limit asked that does not fit is
        # an error (it used to shrink silently, even to 1 token).
        max_tokens = request.max_tokens or min(DEFAULT_MAX_TOKENS, room)
        if max_tokens > room or room < 1:
            raise PromptTooLongError(len(ids), max_tokens, context)
        detokenizer = exact_detokenizer(tokenizer)
        return cls(request, model_id, ids, detokenizer, sink, tokenizer, max_tokens)

    @property
    def seq(self) -> Sequence:
        """A text runner's job is its sequence (`runner.Job`)."""
        return self

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def priority(self) -> Priority:
        return self.request.priority

    def claim(self) -> bool:
        """Worker thread: take the sequence out of the wait queue to start it; False when it
        was cancelled (and answered) while waiting."""
        with self._lock:
            if self.cancelled or self.done:
                return False
            self.started_at = time.perf_counter()
            return True

    def cancel(self) -> None:
        """Any thread: stop the sequence. One still waiting is answered at once; a started one
        leaves the batch at the worker's next step."""
        with self._lock:
            self.cancelled = True
            waiting = self.started_at is None and not self.done
        if waiting:
            self.finish("cancelled", "")

    def _logprob(self, token: int, logprobs: mx.array) -> TokenLogprob:
        n = self.request.logprobs or 0
        flat = logprobs.reshape(-1)
        top: list[tuple[str, float]] = []
        if n:
            idx = mx.argpartition(-flat, kth=n - 1)[:n]
            vals = flat[idx]
            order = mx.argsort(-vals)
            ids = cast(list[int], idx[order].tolist())
            values = cast(list[float], vals[order].tolist())
            top = [(self.tokenizer.decode([i]), float(v)) for i, v in zip(ids, values, strict=True)]
        logprob = cast(float, flat[token].item())
        return TokenLogprob(self.tokenizer.decode([token]), float(logprob), top)

    def add_generated(
        self, token: int, logprobs: mx.array | None, stop_ids: Container[int]
    ) -> bool:
        """Feed a token generated outside mlx_lm's batch (which decides its own finish): it ends
        the turn when it is a stop id or the last one `max_tokens` allows."""
        if token in stop_ids:
            finish: str | None = "stop"
        elif self.completion_tokens + 1 >= self.max_tokens:
            finish = "length"
        else:
            finish = None
        return self.add_token(token, logprobs, finish)

    def add_token(self, token: int, logprobs: mx.array | None, finish: str | None) -> bool:
        """Feed one generated token; return True when the sequence has finished. `logprobs`
        may be None only for requests that asked for none."""
        now = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = now
        elif self.last_token_at is not None:
            self.max_token_gap_s = max(self.max_token_gap_s, now - self.last_token_at)
        self.last_token_at = now
        self.completion_tokens += 1
        is_stop_token = finish == "stop"
        if not is_stop_token:
            self.detokenizer.add_token(token)
            if self.request.logprobs is not None and logprobs is not None:
                self.pending_logprobs.append(self._logprob(token, logprobs))
        if self.guide is not None and not is_stop_token:
            # The guide consumed this token already (as the batch computed the next one).
            if self.guide.error is not None:
                raise ValueError(f"constrained decoding failed: {self.guide.error}")
            if self.guide.complete:  # the grammar allows nothing more: a natural end
                is_stop_token, finish = True, "stop"
        if finish is not None:
            self.detokenizer.finalize()
        text = self.detokenizer.text
        cut = self.stops.find(text, self.emitted)
        if cut is not None:
            self._emit(text[:cut])
            self.finish("stop", text[:cut], stop_sequence=self.stops.matched(text, cut))
            return True
        if finish is not None:
            self._emit(text)
            self.finish("stop" if is_stop_token else "length", text)
            return True
        self._emit(text[: self.stops.safe_end(text)])
        return False

    def _emit(self, text: str) -> None:
        if len(text) > self.emitted or self.pending_logprobs:
            piece = text[self.emitted :]
            self.emitted = max(self.emitted, len(text))
            logprobs, self.pending_logprobs = self.pending_logprobs or None, []
            if piece or logprobs:
                self.sink(Delta(self.request_id, piece, logprobs))

    def finish(
        self,
        reason: FinishReason,
        text: str | None = None,
        error: str | None = None,
        error_code: str | None = None,
        stop_sequence: str | None = None,
    ) -> None:
        with self._lock:  # the worker and a cancelling caller may race to finish it
            if self.done:
                return
            self.done = True
        end = time.perf_counter()
        if text is None:
            text = self.detokenizer.text[: self.emitted]
        ttft = self.first_token_at - self.submitted_at if self.first_token_at else None
        decode_s = end - self.first_token_at if self.first_token_at else 0.0
        tps = (
            (self.completion_tokens - 1) / decode_s
            if decode_s > 0 and self.completion_tokens > 1
            else None
        )
        self.sink(
            Result(
                request_id=self.request_id,
                model=self.model_id,
                text=text,
                finish_reason=reason,
                prompt_tokens=len(self.prompt_tokens),
                completion_tokens=self.completion_tokens,
                time_to_first_token_s=ttft,
                tokens_per_s=tps,
                error=error,
                error_code=error_code,
                cached_prompt_tokens=self.cached_prompt_tokens,
                max_token_gap_s=self.max_token_gap_s if self.completion_tokens > 1 else None,
                stop_sequence=stop_sequence,
            )
        )

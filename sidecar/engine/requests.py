"""What callers hand the engine and what it hands back."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Literal

from sidecar.errors import EngineError
from sidecar.wire import FinishReason  # the one definition; the engine's modules import it here

if TYPE_CHECKING:
    from sidecar.engine.constraints import Constraint

_ids = itertools.count(1)
# Seeds are 64-bit: negative ones (int64, as some clients send -1) wrap to their unsigned value.
SEED_MIN = -(2**63)
SEED_MAX = 2**64 - 1
DEFAULT_MAX_TOKENS = 1024  # when a request names no limit


class Priority(IntEnum):
    """Lower runs first when the batch is full: inline completion before chat before bulk."""

    COMPLETION = 0
    CHAT = 1
    BULK = 2


@dataclass
class GenerateRequest:
    prompt: str | list[int]
    model: str | None = None
    max_tokens: int | None = 256  # None: DEFAULT_MAX_TOKENS, or what the context leaves
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    logprobs: int | None = None  # how many top alternatives per token; None: no logprobs
    priority: Priority = Priority.CHAT
    # Images for a vision model: data: URLs or raw bytes (never paths: sidecar/engine/images.py),
    # in the order of the prompt's image placeholders (see sidecar.engine.chat.start_turn).
    images: list[str | bytes] = field(default_factory=list)
    # The grammar the output must follow (structured output, constrained tool calls); the
    # sequence ends with finish_reason "stop" when the grammar is complete.
    constraint: Constraint | None = None
    request_id: str = field(default_factory=lambda: f"req-{next(_ids)}")
    # What the usage ledger counts it as; None: "completion" at COMPLETION priority, else "chat".
    endpoint: Literal["chat", "completion"] | None = None

    def validate(self) -> None:
        if isinstance(self.prompt, str) and not self.prompt:
            raise EngineError("prompt must not be empty")
        if isinstance(self.prompt, list) and not self.prompt:
            raise EngineError("prompt must not be empty")
        if self.seed is not None and (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or not SEED_MIN <= self.seed <= SEED_MAX
        ):
            raise EngineError(f"seed must be an integer from {SEED_MIN} to {SEED_MAX}")
        if isinstance(self.prompt, list) and any(
            isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in self.prompt
        ):
            raise EngineError("prompt token ids must be non-negative integers")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise EngineError("max_tokens must be at least 1")
        if not 0.0 <= self.temperature <= 100.0:
            raise EngineError("temperature must be between 0 and 100")
        if not 0.0 < self.top_p <= 1.0:
            raise EngineError("top_p must be in (0, 1]")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise EngineError("stop strings must be non-empty strings")
        if self.logprobs is not None and not 0 <= self.logprobs <= 20:
            raise EngineError("logprobs must be between 0 and 20")
        if not isinstance(self.images, list) or any(
            not isinstance(i, str | bytes) or not i for i in self.images
        ):
            raise EngineError("images must be a list of data: URLs or bytes")


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]]


@dataclass
class Delta:
    """A piece of generated text, in order; the deltas concatenate to the final text."""

    request_id: str
    text: str
    logprobs: list[TokenLogprob] | None = None


@dataclass
class Result:
    request_id: str
    model: str
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_s: float | None
    tokens_per_s: float | None
    error: str | None = None
    # "insufficient_memory": the memory budget refused it, or memory ran out in its step
    error_code: str | None = None
    cached_prompt_tokens: int = 0  # prompt tokens served from the prompt cache
    max_token_gap_s: float | None = None  # longest wait between two of its tokens
    stop_sequence: str | None = None  # the stop string that ended it, if one did


@dataclass
class Embeddings:
    model: str
    vectors: list[list[float]]
    prompt_tokens: int

"""What the worker and the engine ask of every runner (text, embeddings, vision)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from sidecar.engine.requests import Priority


@dataclass
class RunnerStats:
    model_id: str
    kind: str
    waiting: dict[str, int] = field(default_factory=dict)  # not started, by class
    prefilling: int = 0  # prompts part way through their prefill
    running: int = 0  # sequences decoding (or embedding calls in progress)
    max_batch_seen: int = 0
    reused_prompt_tokens: int = 0  # prompt tokens served from the prompt cache
    prefilled_tokens: int = 0  # prompt tokens computed
    drafted_tokens: int = 0  # prompt-lookup draft tokens checked (speculative decoding)
    accepted_tokens: int = 0  # of those, the ones the model agreed with

    @property
    def queue_depth(self) -> int:
        return sum(self.waiting.values()) + self.prefilling

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "queue_depth": self.queue_depth}


class Runner(Protocol):
    """One loaded model's work on the worker thread. `urgency` is the class of the most urgent
    work it holds (None: idle); `step` does about one decode step's worth of it."""

    model_id: str

    def urgency(self) -> Priority | None: ...

    def step(self) -> None: ...

    def stats(self) -> RunnerStats: ...

    def close(self) -> None: ...

"""What the worker and the engine ask of every runner (text, embeddings, vision)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sidecar.engine.requests import GenerateRequest, Priority

if TYPE_CHECKING:
    from sidecar.engine.constraints import Guide
    from sidecar.engine.sequence import Sequence, Sink


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

    def fail_all(self, message: str) -> None:
        """End everything it holds with an error (the worker thread died)."""
        ...

    def close(self) -> None: ...


class Job(Protocol):
    """A generation request built for one runner; `seq` is what the engine follows."""

    @property
    def seq(self) -> Sequence: ...


class GenerateRunner(Runner, Protocol):
    """A runner that generates text (text and vision models): the engine builds a job on the
    event loop (`accept`, `new_job`: no MLX) and hands it to the worker (`submit`)."""

    tokenizer: Any
    stop_ids: Any

    def accept(self, request: GenerateRequest) -> None:
        """Raise the request's error when this model cannot serve it (images, grammars)."""
        ...

    def new_job(
        self, request: GenerateRequest, sink: Sink, images: list[Any], guide: Guide | None
    ) -> Job: ...

    def submit(self, job: Any) -> None: ...

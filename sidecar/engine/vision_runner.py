"""Streamed generation for one vision model (mlx_vlm), interleaved with the text batches.

Each worker step advances one active request by one token through `next()` on mlx_vlm's
`generate_step` generator (up to `MAX_ACTIVE` requests take turns; more wait in the priority
queue), so text requests keep decoding while vision answers stream. A request's first step
encodes its images and prefills its prompt: the prefill runs in chunks of the engine's
`prefill_chunk`, and between chunks (mlx_vlm's prompt-cache checkpoint callback) the worker
steps the other runners once, so a long vision prompt does not freeze text streams. The image
encoder itself runs in one piece (mlx_vlm has no hook inside it): seconds for a large image.

Images arrive as `data:` URLs or raw bytes; `sidecar.engine.images.load_images` checks and
decodes them off the worker thread before the request is queued, so a bad image fails the call
at once.

Runs only on the engine's worker thread (except `message_images` and `new_job`, which touch
no MLX state).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecar.engine.constraints import ConstraintError, Guide
from sidecar.engine.detokenize import exact_detokenizer
from sidecar.engine.memory import Admission, MemoryGovernor, kv_bytes_per_token, kv_tokens
from sidecar.engine.requests import DEFAULT_MAX_TOKENS, GenerateRequest, Priority
from sidecar.engine.runner import RunnerStats
from sidecar.engine.sampling import make_request_sampler
from sidecar.engine.scheduler import WaitQueue, WaitTimes, most_urgent
from sidecar.engine.sequence import Sequence, Sink
from sidecar.errors import EngineError, PromptTooLongError, SidecarError
from sidecar.models.limits import context_length_of, stop_token_ids

log = logging.getLogger(__name__)

IMAGE_PART_TYPES = ("image_url", "image", "input_image")


# -- messages and images (no MLX) --------------------------------------------------------------


def _image_parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The image parts of list contents, in prompt order."""
    parts = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            parts += [
                p
                for p in content
                if isinstance(p, dict)
                and (p.get("type") in IMAGE_PART_TYPES or any(k in p for k in IMAGE_PART_TYPES))
            ]
    return parts


def _part_image(part: dict[str, Any]) -> str | bytes | None:
    """An image part's source; None for a bare `{"type": "image"}` placeholder."""
    value = part.get("image_url", part.get("image", part.get("input_image")))
    if isinstance(value, dict):  # {"url": "data:..."} (OpenAI)
        value = value.get("url")
    return value if isinstance(value, str | bytes) and value else None


def image_count(messages: list[dict[str, Any]]) -> int:
    """How many image placeholders the messages' prompt will have."""
    return len(_image_parts(messages))


def message_images(messages: list[dict[str, Any]]) -> list[str | bytes]:
    """Every image in OpenAI-style chat messages, in prompt order: the sources of the
    `image_url` (`image`, `input_image`) parts of list contents. Pass them as
    `GenerateRequest.images` with the prompt of the turn (`sidecar.engine.chat.start_turn`). (Bare
    `{"type": "image"}` placeholders have no source: send their images in `images` yourself.)"""
    return [src for part in _image_parts(messages) if (src := _part_image(part)) is not None]


def text_only_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages whose list contents (text parts only) are joined into strings, for text
    models' chat templates."""
    out = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            texts = [str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p]
            message = {**message, "content": "".join(texts)}
        out.append(message)
    return out


def render_vision_chat(processor: Any, config: Any, messages: list[dict[str, Any]]) -> str:
    """Chat messages (string or OpenAI-style list contents) -> the vision model's prompt text,
    with one image placeholder where each image part is."""
    from mlx_vlm.prompt_utils import apply_chat_template

    if not messages:
        raise EngineError("messages must not be empty")
    try:
        rendered = apply_chat_template(
            processor, config, messages, num_images=image_count(messages)
        )
    except EngineError:
        raise
    except Exception as e:
        raise EngineError(f"the model's chat template rejected the messages: {e}") from e
    if not isinstance(rendered, str):
        raise EngineError("the model's chat template did not render to text")
    return rendered


# -- the runner (worker thread) ----------------------------------------------------------------

MAX_ACTIVE = 4  # vision requests that take turns, a token each per step


@dataclass
class VisionJob:
    seq: Sequence
    prompt: str
    images: list[Any] = field(default_factory=list)  # PIL images
    stream: Iterator[tuple[Any, Any]] | None = None  # mlx_vlm's (token, logprobs) generator
    kv_need: int | None = None  # KV bytes it can grow to, once its prompt was processed


class VisionRunner:
    """One loaded vision model: a queue of requests, the active ones streamed token by token."""

    def __init__(
        self,
        model_id: str,
        model: Any,
        processor: Any,
        path: Path,
        waits: WaitTimes | None = None,
        prefill_chunk: int = 64,
        between_chunks: Callable[[VisionRunner], None] | None = None,
        governor: MemoryGovernor | None = None,
    ) -> None:
        from mlx_lm.tokenizer_utils import TokenizerWrapper
        from mlx_lm.tokenizer_utils import load as load_tokenizer

        self.model_id = model_id
        self.model = model
        self.processor = processor
        # mlx_lm's wrapper over the same tokenizer files: fresh streaming detokenizers per
        # request and `decode`, as text models have.
        try:
            self.tokenizer = load_tokenizer(Path(path))
        except Exception:  # files only the processor understands: wrap its tokenizer
            self.tokenizer = TokenizerWrapper(getattr(processor, "tokenizer", processor))
        eos = getattr(model.config, "eos_token_id", None)
        extra = eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else []
        self.stop_ids = set(stop_token_ids(self.tokenizer)) | set(extra)
        self.image_token: str | None = getattr(processor, "image_token", None)
        self.waits = waits or WaitTimes()
        self.prefill_chunk = prefill_chunk
        # Steps the engine's other runners once; called between prefill chunks. It takes this
        # runner as an argument (it is the worker's method) so no reference cycle keeps an
        # unloaded model alive.
        self.between_chunks = between_chunks
        self.governor = governor
        language = getattr(model, "language_model", None)  # its KV, measured as for text
        self.kv_bytes_per_token = (
            kv_bytes_per_token(language) if governor is not None and language is not None else 0
        )
        self.waiting: WaitQueue[VisionJob] = WaitQueue()
        self.active: list[VisionJob] = []
        self._turn = 0
        self.max_batch_seen = 0
        self.generated_tokens = 0

    # -- what the engine and the worker read --

    def urgency(self) -> Priority | None:
        started = [job.seq.priority for job in self.active]
        head = self.waiting.peek()
        need = head.kv_need if head is not None else None
        if need is not None and self.governor and not self.governor.would_admit(need):
            return min(started) if started else None  # its head waits for memory
        return most_urgent(started, self.waiting)

    def stats(self) -> RunnerStats:
        return RunnerStats(
            model_id=self.model_id,
            kind="vision",
            waiting=self.waiting.counts(),
            running=len(self.active),
            max_batch_seen=self.max_batch_seen,
        )

    @property
    def context_length(self) -> int:
        return context_length_of(self.model)

    # -- building a request (event loop thread; no MLX) --

    def accept(self, request: GenerateRequest) -> None:
        if request.constraint is not None:
            raise ConstraintError(
                f"model {self.model_id!r} is a vision model: response_format and tool grammars "
                "are supported on text models only"
            )

    def new_job(
        self, request: GenerateRequest, sink: Sink, images: list[Any], guide: Guide | None
    ) -> VisionJob:
        prompt = request.prompt
        if isinstance(prompt, list):
            prompt = self.tokenizer.decode(prompt)
        if images or (self.image_token and self.image_token in prompt):
            placeholders = prompt.count(self.image_token) if self.image_token else len(images)
            if placeholders != len(images):
                raise EngineError(
                    f"the prompt has {placeholders} image placeholder(s) but {len(images)} "
                    "image(s) were sent; build the prompt with chat_prompt(model, messages) and pass "
                    "message_images(messages)"
                )
        seq = Sequence(
            request=request,
            model_id=self.model_id,
            prompt_tokens=[],  # known once the processor has expanded the images
            detokenizer=exact_detokenizer(self.tokenizer),
            sink=sink,
            tokenizer=self.tokenizer,
        )
        return VisionJob(seq, prompt, images)

    # -- worker thread --

    def submit(self, job: VisionJob) -> None:
        self.waiting.push(job.seq.priority, job)

    def _yield_point(self, _processed: int, _cache: Any) -> None:
        if self.between_chunks is not None:
            self.between_chunks(self)

    def _start(self, job: VisionJob) -> Iterator[tuple[Any, Any]] | None:
        """Process the images and prompt, and open mlx_vlm's token stream for `job` (the
        prefill happens at its first `next()`); None when its KV must wait for memory."""
        from mlx_vlm.generate.ar import generate_step
        from mlx_vlm.utils import prepare_inputs, should_add_special_tokens

        req = job.seq.request
        config = self.model.config
        inputs = prepare_inputs(
            self.processor,
            images=job.images or None,
            prompts=job.prompt,
            image_token_index=getattr(config, "image_token_index", None),
            add_special_tokens=should_add_special_tokens(config.model_type, self.processor),
        )
        input_ids = inputs["input_ids"]
        job.seq.prompt_tokens = input_ids.reshape(-1).tolist()
        n = len(job.seq.prompt_tokens)
        room = self.context_length - n
        # As for text (TextRunner.new_job): no limit asked is the default cut to the
        # context; a limit asked that does not fit is the same error, never a silent shrink.
        max_tokens = req.max_tokens or min(DEFAULT_MAX_TOKENS, room)
        if max_tokens > room or room < 1:
            raise PromptTooLongError(n, max_tokens, self.context_length)
        extra = {
            k: v
            for k, v in inputs.items()
            if k not in ("input_ids", "pixel_values", "attention_mask")
        }
        job.seq.max_tokens = max_tokens
        if self.governor is not None and self.kv_bytes_per_token:
            job.kv_need = self.kv_bytes_per_token * kv_tokens(n, job.seq.max_tokens)
            verdict = self.governor.admit(job.seq, job.kv_need)
            if verdict is Admission.REFUSE:
                raise self.governor.refusal(job.kv_need, n, job.seq.max_tokens)
            if verdict is Admission.WAIT:
                return None
        sampler = make_request_sampler(req.temperature, req.top_p, req.seed)
        # generate_step rather than stream_generate: it takes the checkpoint callback (our
        # yield point between prefill chunks); we detokenize and stop ourselves anyway.
        return generate_step(
            input_ids,
            self.model,
            inputs.get("pixel_values"),
            inputs.get("attention_mask"),
            max_tokens=job.seq.max_tokens,
            temperature=0.0,
            sampler=sampler,
            prefill_step_size=self.prefill_chunk,
            prompt_cache_checkpoint=self._yield_point,
            prompt_cache_checkpoint_lengths=list(range(self.prefill_chunk, n, self.prefill_chunk)),
            **extra,
        )

    def _end(self, job: VisionJob) -> None:
        close: Callable[[], None] | None = getattr(job.stream, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("closing the stream of %s failed", self.model_id)
        job.stream = None
        if job in self.active:
            self.active.remove(job)

    def _admit(self) -> None:
        """Start the best waiting requests while there is room."""
        while self.waiting and len(self.active) < MAX_ACTIVE:
            job = self.waiting.pop()
            if not job.seq.claim():
                job.seq.finish("cancelled", "")
                continue
            self.waits.record(job.seq.priority, time.perf_counter() - job.seq.submitted_at)
            try:
                stream = self._start(job)
            except SidecarError as e:  # over the context, the memory budget (InvalidRequest,
                # InsufficientMemory): the user's message and its machine code
                job.seq.finish("error", "", error=str(e), error_code=e.machine_code)
                continue
            except Exception as e:  # e.g. the processor rejects an image: this request only
                log.warning("vision request %s could not start: %s", job.seq.request_id, e)
                job.seq.finish("error", "", error=f"could not prepare the request: {e}")
                continue
            if stream is None:  # back to the head of its class, to wait for memory
                job.seq.started_at = None
                self.waiting.push_front(job.seq.priority, job)
                break
            job.stream = stream
            self.active.append(job)
        self.max_batch_seen = max(self.max_batch_seen, len(self.active))

    def step(self) -> None:
        """Advance one active request by one token (the most urgent class first, taking
        turns within it)."""
        for job in self.waiting.drop(lambda j: j.seq.cancelled or j.seq.done):
            job.seq.finish("cancelled", "")
        for job in [j for j in self.active if j.seq.cancelled]:
            job.seq.finish("cancelled")
            self._end(job)
        self._admit()
        if not self.active:
            return
        top = min(j.seq.priority for j in self.active)
        turn = [j for j in self.active if j.seq.priority == top]
        job = turn[self._turn % len(turn)]
        self._turn += 1
        seq = job.seq
        assert job.stream is not None
        try:
            token, logprobs = next(job.stream)
            done = self._deliver(seq, int(token), logprobs)
        except StopIteration:
            seq.finish("length")
            done = True
        except Exception as e:  # this request only; the model stays usable
            log.exception("vision request %s failed", seq.request_id)
            seq.finish("error", error=f"generation failed: {e}")
            done = True
        if done:
            self._end(job)

    def _deliver(self, seq: Sequence, token: int, logprobs: Any) -> bool:
        """Feed one generated token to the sequence; True when the request is done."""
        self.generated_tokens += 1
        return seq.add_generated(token, logprobs, self.stop_ids)

    def fail_all(self, message: str) -> None:
        for job in list(self.active):
            job.seq.finish("error", error=message)
            self._end(job)
        for job in self.waiting.drop(lambda j: True):
            job.seq.finish("error", "", error=message)

    def close(self) -> None:
        self.fail_all("model unloaded")

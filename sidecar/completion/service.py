"""One inline completion against the engine: prompt, generation at completion priority,
post-processing. Used by the JSON-RPC inline handler and the typing-session replay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from sidecar.completion.context import ContextRing, uri_path
from sidecar.completion.postprocess import postprocess
from sidecar.completion.prompt import build_completion_prompt, token_counter
from sidecar.engine.engine import Engine
from sidecar.engine.requests import Delta, EngineError, GenerateRequest, Priority, Result

BLOCK_END = "\n\n\n"  # two blank lines: the next top-level definition follows


class CompletionOptions(BaseModel):
    """Inline completion settings (the editor sends them camelCase)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    enabled: bool = True
    max_tokens: int = Field(default=24, ge=1, le=512)
    prefix_tokens: int = Field(default=256, ge=16, le=16384)
    suffix_tokens: int = Field(default=64, ge=0, le=8192)
    context_tokens: int = Field(default=128, ge=0, le=8192)  # cross-file chunks; costs prefill
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    # Models without FIM tokens: "prefix" continues the prefix (the suffix is unseen); "chat"
    # asks a chat model to fill the hole (SmolLM2-135M just restates the file: use "prefix").
    fallback: Literal["chat", "prefix"] = "prefix"
    cache_size: int = Field(default=64, ge=0, le=4096)
    # Like llama.vscode's t_max_predict_ms: past this, show what has been made so far (a ghost
    # text that is a prefix of the full answer) rather than keep the user waiting.
    max_time_ms: int = Field(default=1000, ge=50, le=60000)
    ring_chunks: int = Field(default=16, ge=0, le=256)
    chunk_lines: int = Field(default=24, ge=4, le=256)


@dataclass
class Completion:
    text: str  # ghost text to insert at the cursor ("" when nothing useful came)
    model: str
    raw: str  # what the model generated
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    finish_reason: str


_families: dict[str, str | None] = {}


async def fim_family_of(engine: Engine, model_id: str) -> str | None:
    if model_id not in _families:
        info = await asyncio.to_thread(engine.store.info, model_id)
        _families[model_id] = info.fim
    return _families[model_id]


async def complete_inline(
    engine: Engine,
    model: str,
    prefix: str,
    suffix: str,
    options: CompletionOptions,
    ring: ContextRing | None = None,
    uri: str | None = None,
) -> Completion:
    """Ghost text for the cursor between `prefix` and `suffix`. Cancelling the calling task
    cancels the engine request (its batch slot frees at the next step)."""
    started = time.perf_counter()
    loaded = await engine.load(model)
    family = await fim_family_of(engine, loaded.id)
    tokenizer = loaded.tokenizer
    extra = None
    if ring is not None and uri is not None and options.context_tokens:
        extra = ring.pick(uri, options.context_tokens, token_counter(tokenizer)) or None
    prompt = build_completion_prompt(
        tokenizer,
        family,
        prefix,
        suffix,
        prefix_tokens=options.prefix_tokens,
        suffix_tokens=options.suffix_tokens,
        extra_files=extra,
        fallback=options.fallback,
        path=uri_path(uri) if uri else None,
    )
    if isinstance(prompt.prompt, str) and not prompt.prompt.strip():  # an empty buffer
        return Completion("", loaded.id, "", 0, 0, time.perf_counter() - started, "stop")
    mid_line = bool(suffix.split("\n", 1)[0].strip())
    stop = [*prompt.stop, "\n" if mid_line else BLOCK_END]
    request = GenerateRequest(
        prompt=prompt.prompt,
        model=loaded.id,
        max_tokens=options.max_tokens,
        temperature=options.temperature,
        stop=stop,
        priority=Priority.COMPLETION,
    )

    deadline = started + options.max_time_ms / 1000

    def settled(generated: str) -> bool:
        """True once more tokens cannot change the ghost text: it no longer starts with the
        typed word, or post-processing already cut it short (a line left the block, repeated
        the next line, closed an unopened bracket), or the time budget is spent and there is
        something to show. Mid-line answers end at the newline."""
        answer = prompt.answer(generated)
        if answer is None:  # wait while it is still a prefix of the typed word
            return not prompt.healed.startswith(generated)
        if answer.strip() and time.perf_counter() > deadline:
            return True
        if mid_line or prompt.chat:
            return False
        cleaned = answer.rstrip()
        return len(postprocess(answer, prompt.prefix, prompt.suffix)) < len(cleaned)

    result = await generate_until(engine, request, settled)
    answer = prompt.answer(result.text)
    text = postprocess(answer, prompt.prefix, prompt.suffix, chat=prompt.chat) if answer else ""
    return Completion(
        text=text,
        model=loaded.id,
        raw=result.text,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        latency_s=time.perf_counter() - started,
        finish_reason=result.finish_reason,
    )


async def generate_until(
    engine: Engine, request: GenerateRequest, settled: Callable[[str], bool]
) -> Result:
    """Run the request, cancelling it as soon as `settled(text so far)` says more tokens are
    wasted; return its result (finish_reason "cancelled" when stopped that way)."""
    text = ""
    stopping = False
    async for event in engine.generate(request):
        if isinstance(event, Delta):
            text += event.text
            if not stopping and settled(text):
                stopping = engine.cancel(request.request_id)
        elif isinstance(event, Result):
            if event.finish_reason == "error":
                raise EngineError(event.error or "generation failed")
            return event
    raise RuntimeError("the engine ended a request without a result")

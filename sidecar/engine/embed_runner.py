"""Batched embeddings for one embedding model: every embed call waiting when the worker gets to
it goes into one forward pass (chunked), then the vectors are split back per call.

Runs only on the engine's worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx_embeddings

from sidecar.engine.requests import EmbedResult

log = logging.getLogger(__name__)
MAX_BATCH = 64
MAX_LENGTH = 512


@dataclass
class EmbedCall:
    texts: list[str]
    done: Callable[[EmbedResult | BaseException], None]


class EmbedRunner:
    def __init__(self, model_id: str, model: Any, tokenizer: Any) -> None:
        self.model_id = model_id
        self.model = model
        self.tokenizer = tokenizer
        self.pending: list[EmbedCall] = []
        self.max_batch_seen = 0
        self.embedded_texts = 0

    @property
    def busy(self) -> bool:
        return bool(self.pending)

    @property
    def queue_depth(self) -> int:
        return len(self.pending)

    def submit(self, call: EmbedCall) -> None:
        self.pending.append(call)

    def _count_tokens(self, texts: list[str]) -> int:
        tok = getattr(self.tokenizer, "_tokenizer", self.tokenizer)
        return sum(
            len(ids) for ids in tok(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        )

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for i in range(0, len(texts), MAX_BATCH):
            chunk = texts[i : i + MAX_BATCH]
            out = mlx_embeddings.generate(self.model, self.tokenizer, chunk, max_length=MAX_LENGTH)
            embeds = out.text_embeds.astype(mx.float32)
            mx.eval(embeds)
            vectors.extend(embeds.tolist())
        return vectors

    def step(self) -> None:
        calls, self.pending = self.pending, []
        if not calls:
            return
        texts = [t for c in calls for t in c.texts]
        self.max_batch_seen = max(self.max_batch_seen, len(texts))
        try:
            vectors = self.embed(texts)
        except Exception:
            # Find the culprit: run each call alone so one bad input fails only its caller.
            log.exception("batched embedding failed; retrying calls one by one")
            for c in calls:
                self._run_alone(c)
            return
        start = 0
        for c in calls:
            part = vectors[start : start + len(c.texts)]
            start += len(c.texts)
            c.done(EmbedResult(self.model_id, part, self._count_tokens(c.texts)))
        self.embedded_texts += len(texts)

    def _run_alone(self, call: EmbedCall) -> None:
        try:
            result = EmbedResult(
                self.model_id, self.embed(call.texts), self._count_tokens(call.texts)
            )
        except Exception as e:
            call.done(e)
            return
        self.embedded_texts += len(call.texts)
        call.done(result)

    def close(self) -> None:
        calls, self.pending = self.pending, []
        for c in calls:
            c.done(RuntimeError("model unloaded"))

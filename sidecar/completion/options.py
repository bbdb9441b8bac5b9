"""Inline completion settings, as the editor sends them (camelCase) under `completion`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class CompletionOptions(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    enabled: bool = True
    max_tokens: int = Field(default=24, ge=1, le=512)
    prefix_tokens: int = Field(default=256, ge=16, le=16384)
    # The suffix is re-prefilled at each word boundary when it follows the prefix (PSM order):
    # kept short, it costs little.
    suffix_tokens: int = Field(default=32, ge=0, le=8192)
    # Cross-file chunks. 16-line chunks of this repository measure 115-227 tokens (p10-p90,
    # SmolLM2's tokenizer), so 512 holds two or three; they are prefilled in the background.
    context_tokens: int = Field(default=512, ge=0, le=8192)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    # Models without FIM tokens: "prefix" continues the prefix (the suffix is unseen); "chat"
    # asks a chat model to fill the hole (SmolLM2-135M just restates the file: use "prefix").
    fallback: Literal["chat", "prefix"] = "prefix"
    cache_size: int = Field(default=64, ge=0, le=4096)
    # Like llama.vscode's t_max_predict_ms, but a timer: past this the reply is what has been
    # made so far (a prefix of the full answer, maybe nothing), never a longer wait.
    max_time_ms: int = Field(default=1000, ge=50, le=60000)
    ring_chunks: int = Field(default=16, ge=0, le=256)
    chunk_lines: int = Field(default=16, ge=4, le=256)

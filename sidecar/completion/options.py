"""Inline completion settings, as the editor sends them (camelCase) under `completion`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class CompletionOptions(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    enabled: bool = True
    # The budgets are chosen with `bench --suite fim` on the Qwen coder (README, "Ghost text
    # quality"): with 256/32 the editor matched 0.23 of HumanEval's holes, half the model's
    # 0.47 called directly; 1024/256 holds a whole HumanEval problem (prefix p99 492 tokens,
    # suffix max 235) and matches the direct call. The Qwen coder takes the suffix first (SPM,
    # sidecar/completion/fim.py), so the suffix budget costs once per place, not per keystroke.
    max_tokens: int = Field(default=48, ge=1, le=512)
    prefix_tokens: int = Field(default=1024, ge=16, le=16384)
    suffix_tokens: int = Field(default=256, ge=0, le=8192)
    # Cross-file chunks. 16-line chunks of this repository measure 115-227 tokens (p10-p90,
    # SmolLM2's tokenizer), so 512 holds two or three; they are prefilled in the background.
    context_tokens: int = Field(default=512, ge=0, le=8192)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    # Models without FIM tokens: "prefix" continues the prefix (the suffix is unseen); "chat"
    # asks a chat model to fill the hole (SmolLM2-135M just restates the file: use "prefix").
    fallback: Literal["chat", "prefix"] = "prefix"
    cache_size: int = Field(default=64, ge=0, le=4096)
    # Like llama.vscode's t_max_predict_ms: decoding time from the first token (the prefill is
    # bounded by the token budgets above); past it the reply is what has been made so far (its
    # finished lines). Chosen with `bench --suite fim` (README: the quality/latency table).
    max_time_ms: int = Field(default=1000, ge=50, le=60000)
    ring_chunks: int = Field(default=16, ge=0, le=256)
    chunk_lines: int = Field(default=16, ge=4, le=256)

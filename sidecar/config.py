"""One settings model for the sidecar: defaults, environment (MLX_SIDECAR_*), CLI flags, editor."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sidecar.limits import Limits

# The one sampling temperature for a request that names none, on JSON-RPC (`mlx/chat`), HTTP and
# in the editor (which sends none unless the user sets one). Greedy: an editor wants the same
# answer to the same question, small local models wander off at higher temperatures, and
# mlx_lm.server (whose clients the OpenAI port also serves) defaults to greedy too.
DEFAULT_TEMPERATURE = 0.0


def default_models_dir() -> Path:
    return Path.home() / ".cache" / "mlx-sidecar" / "models"


def default_workspace_index_dir() -> Path:
    return Path.home() / ".cache" / "mlx-sidecar" / "workspaces"


def default_memory_budget() -> int:
    try:
        import os

        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(total * 0.5)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLX_SIDECAR_", env_nested_delimiter="__", extra="ignore"
    )

    models_dir: Path = Field(default_factory=default_models_dir)
    use_hf_cache: bool = True
    completion_model: str = "SmolLM2-135M-Instruct"
    chat_model: str = "SmolLM2-135M-Instruct"
    embedding_model: str = "all-MiniLM-L6-v2"
    memory_budget_bytes: int = Field(default_factory=default_memory_budget)
    idle_ttl_s: float = 1800.0
    max_batch: int = 32
    # Prompt tokens per prefill chunk (None: 64 on a CPU, 512 on Metal/CUDA): a running stream
    # waits at most one chunk for another request's prompt.
    prefill_chunk: int | None = Field(default=None, ge=8)
    # Seconds of quiet after which a text model keeps only its newest prompt caches' KV.
    prompt_cache_idle_s: float = Field(default=60.0, ge=0)
    # Prompt-lookup speculative decoding for a greedy completion decoding alone.
    speculative: bool = True
    embed_slice_texts: int = Field(default=16, ge=1)  # texts per embedding forward pass
    http_host: str = "127.0.0.1"
    http_port: int | None = None
    api_key: str | None = None
    api_key_file: Path | None = None  # the key on the file's first line: not visible in `ps`
    limits: Limits = Field(default_factory=Limits)
    # Against stalled clients (see sidecar/http/timeouts.py); connections beyond the cap get 503.
    http_header_timeout_s: float = Field(default=10.0, gt=0)
    http_body_timeout_s: float = Field(default=30.0, gt=0)
    http_keep_alive_s: float = Field(default=5.0, gt=0)
    http_max_connections: int = Field(default=512, ge=1)
    # The largest JSON-RPC message accepted on stdio; a longer Content-Length is refused.
    max_message_bytes: int = 64 << 20
    # Workspace index and @workspace retrieval (issue 14; sidecar/workspace/): one SQLite file per
    # workspace root under the dir; files over max_file_bytes are skipped; embeddings go to the
    # engine at BULK priority in calls of embed_batch texts when the engine has long been idle,
    # embed_busy_batch right after the user's work, each once no completion or chat has run for
    # quiet_s (sidecar/workspace/pacing.py); @workspace puts retrieved chunks into the chat
    # prompt up to chat_tokens.
    workspace_index_dir: Path = Field(default_factory=default_workspace_index_dir)
    workspace_max_file_bytes: int = Field(default=256 << 10, ge=1)
    workspace_max_files: int = Field(default=20000, ge=1)
    workspace_embed_batch: int = Field(default=16, ge=1)
    workspace_embed_busy_batch: int = Field(default=2, ge=1)
    workspace_quiet_s: float = Field(default=0.5, ge=0)
    workspace_chat_tokens: int = Field(default=1500, ge=0)
    workspace_chat_chunks: int = Field(default=6, ge=1)


def on_macos() -> bool:
    return sys.platform == "darwin"

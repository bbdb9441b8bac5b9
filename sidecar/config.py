"""One settings model for the sidecar: defaults, environment (MLX_SIDECAR_*), CLI flags, editor."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_models_dir() -> Path:
    return Path.home() / ".cache" / "mlx-sidecar" / "models"


def default_memory_budget() -> int:
    try:
        import os

        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(total * 0.5)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLX_SIDECAR_", extra="ignore")

    models_dir: Path = Field(default_factory=default_models_dir)
    use_hf_cache: bool = True
    completion_model: str = "SmolLM2-135M-Instruct"
    chat_model: str = "SmolLM2-135M-Instruct"
    embedding_model: str = "all-MiniLM-L6-v2"
    memory_budget_bytes: int = Field(default_factory=default_memory_budget)
    idle_ttl_s: float = 1800.0
    max_batch: int = 32
    prefill_step_size: int = 512
    http_host: str = "127.0.0.1"
    http_port: int | None = None
    api_key: str | None = None
    # The largest JSON-RPC message accepted on stdio; a longer Content-Length is refused.
    max_message_bytes: int = 64 << 20
    # float32 on CPU-only machines: only float32 matmuls are fast there (OpenBLAS).
    cpu_dtype: str = "float32"


def on_macos() -> bool:
    return sys.platform == "darwin"

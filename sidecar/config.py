"""One settings model for the sidecar: defaults, environment (MLX_SIDECAR_*), CLI flags, editor."""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from sidecar.limits import Limits
from sidecar.upstreams.settings import FallbackSettings, UpstreamSettings

# The one sampling temperature for a request that names none, on JSON-RPC (`mlx/chat`), HTTP and
# in the editor (which sends none unless the user sets one). Greedy: an editor wants the same
# answer to the same question, small local models wander off at higher temperatures, and
# mlx_lm.server (whose clients the OpenAI port also serves) defaults to greedy too.
DEFAULT_TEMPERATURE = 0.0


def cache_home() -> Path:
    """$XDG_CACHE_HOME (when set to an absolute path, as the XDG spec asks), else ~/.cache."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    return Path(base) if os.path.isabs(base) else Path.home() / ".cache"


def default_models_dir() -> Path:
    return cache_home() / "mlx-sidecar" / "models"


def default_workspace_index_dir() -> Path:
    return cache_home() / "mlx-sidecar" / "workspaces"


def default_memory_budget() -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(total * 0.5)


# -- configuration file, usage ledger, tracing (issue 13 part A) -------------------------------
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
# The TOML file `Settings` reads, set only while `sidecar.config_file.load_settings` builds one:
# a plain `Settings()` (tests, library use) reads the environment and defaults, never a file
# in the user's home.
CONFIG_FILE: ContextVar[Path | None] = ContextVar("mlx_sidecar_config_file", default=None)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mlx-sidecar"


def default_usage_db() -> Path:
    return default_state_dir() / "usage.sqlite3"


class Price(BaseModel):
    """Dollars (or any currency) per million tokens, `[prices."MODEL"]` or `[prices.UPSTREAM]`."""

    model_config = {"extra": "forbid"}

    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)


def split_list(value: Any) -> Any:
    """A list from the environment: JSON (`["a", "b"]`) or comma-separated (`a,b`)."""
    if isinstance(value, str):
        import json

        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


# -----------------------------------------------------------------------------------------------


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLX_SIDECAR_", env_nested_delimiter="__", extra="ignore"
    )

    models_dir: Path = Field(default_factory=default_models_dir)
    use_hf_cache: bool = True
    completion_model: str = "Qwen2.5-Coder-0.5B-Instruct"  # FIM-trained (models/defaults.py)
    chat_model: str = "SmolLM2-135M-Instruct"
    embedding_model: str = "all-MiniLM-L6-v2"
    memory_budget_bytes: int = Field(default_factory=default_memory_budget, ge=1)
    idle_ttl_s: float = Field(default=1800.0, ge=0)
    max_batch: int = Field(default=32, ge=1)
    # Prompt tokens per prefill chunk (None: 64 on a CPU, 512 on Metal/CUDA): a running stream
    # waits at most one chunk for another request's prompt.
    prefill_chunk: int | None = Field(default=None, ge=8)
    # Seconds of quiet after which a text model keeps only its newest prompt caches' KV.
    prompt_cache_idle_s: float = Field(default=60.0, ge=0)
    # Prompt-lookup speculative decoding for greedy requests: a completion decoding alone, and
    # the greedy rows of a batch where it pays.
    speculative: bool = True
    # While ghost text and a chat both have work, ghost text gets this many seconds of the
    # worker's for each second of the chat's (4: ghost text 4/5 of the machine, the chat 1/5
    # at least). Lower it to keep a chat faster while typing, at ghost text's cost
    # (`bench --suite typing` measures both; README).
    completion_share: float = Field(default=4.0, ge=1.0, le=64.0)
    embed_slice_texts: int = Field(default=16, ge=1)  # texts per embedding forward pass
    http_host: str = "127.0.0.1"
    http_port: int | None = Field(default=None, ge=0, le=65535)  # 0: a free port
    api_key: str | None = None
    api_key_file: Path | None = None  # the key on the file's first line: not visible in `ps`
    limits: Limits = Field(default_factory=Limits)
    # Against stalled clients (see sidecar/http/timeouts.py); connections beyond the cap get 503.
    http_header_timeout_s: float = Field(default=10.0, gt=0)
    http_body_timeout_s: float = Field(default=30.0, gt=0)
    http_keep_alive_s: float = Field(default=5.0, gt=0)
    http_max_connections: int = Field(default=512, ge=1)
    # The largest JSON-RPC message accepted on stdio; a longer Content-Length is refused.
    max_message_bytes: int = Field(default=64 << 20, ge=1024)
    # One sidecar per machine (`mlx-sidecar daemon`, `stdio --attach`; issue 12). The daemon's
    # socket, token and lock live in `daemon_runtime_dir` (default $XDG_RUNTIME_DIR/mlx-sidecar,
    # else ~/.cache/mlx-sidecar/run); it exits `daemon_grace_s` after its last client left. Its
    # OpenAI port is `http_port` (None: none; 0: a free port).
    daemon_runtime_dir: Path | None = None
    daemon_grace_s: float = Field(default=60.0, ge=0)
    daemon_start_timeout_s: float = Field(default=60.0, gt=0)  # an attaching client waits this long
    # -- memory governor and worker watchdog (issue 12) --
    # (the budget itself, `memory_budget_bytes`, covers weights + running KV + prompt caches)
    # A worker step (or call) running longer than this marks the engine unhealthy: /health 503.
    watchdog_step_s: float = Field(default=120.0, gt=0)
    # Remote upstreams and fallback (issue 13, sidecar/upstreams/): OpenAI-compatible endpoints
    # by name, whose models are "NAME/MODEL", and per role the upstream model that serves what
    # the local engine cannot (env: MLX_SIDECAR_UPSTREAMS__TEAM__BASE_URL=...).
    upstreams: dict[str, UpstreamSettings] = Field(default_factory=dict)
    fallback: FallbackSettings = Field(default_factory=FallbackSettings)

    # -- configuration file, usage ledger, tracing (issue 13 part A) -----------------------------
    log_level: LogLevel = "warning"  # stderr; the editor's `logLevel` passes --log-level
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)  # OpenAI port
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)  # Host headers
    usage: bool = True  # record requests, tokens, errors, latency and cost in `usage_db`
    usage_db: Path = Field(default_factory=default_usage_db)
    prices: dict[str, Price] = Field(default_factory=dict)  # by model id or upstream name
    tracing: Literal["off", "otlp", "logfire"] = "off"  # OpenTelemetry spans (sidecar/tracing.py)
    tracing_endpoint: str | None = None  # OTLP/HTTP, e.g. http://127.0.0.1:4318/v1/traces
    tracing_include_prompts: bool = False  # prompt text in spans only when this is true

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_list(value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """CLI flags (init arguments) > environment > configuration file > defaults."""
        path = CONFIG_FILE.get()
        if path is None:
            return (init_settings, env_settings)
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, path))

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
    # Indexes kept open at once (each holds a SQLite connection: ~3 file descriptors); the least
    # recently used idle one is closed past this, and reopened from disk when asked for again.
    workspace_max_open_indexes: int = Field(default=16, ge=1)

"""What the user declares about each upstream and about falling back to one (`Settings.upstreams`,
`Settings.fallback`; from the environment as `MLX_SIDECAR_UPSTREAMS__TEAM__BASE_URL=...`, or the
config file's `[upstreams.NAME]` and `[fallback]` tables)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class UpstreamSettings(BaseModel):
    """One OpenAI-compatible endpoint. The key is never a setting: only where to find it."""

    model_config = ConfigDict(extra="forbid")

    base_url: str  # up to and including /v1, e.g. http://cluster:8000/v1
    api_key_env: str | None = None  # the environment variable that holds the key
    api_key_keyring: str | None = None  # "service/user" in the OS keyring
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=300.0, gt=0)  # between bytes of a reply
    # Bounds on what an upstream may send back (sidecar/upstreams/client.py): the wait for its
    # reply's headers, the whole call (a stream that drips a byte a second ends here), one SSE
    # line, one non-streamed body; and the whole `/models` listing, which `GET /v1/models`
    # waits for.
    first_byte_timeout_s: float = Field(default=120.0, gt=0)
    total_timeout_s: float = Field(default=900.0, gt=0)
    max_line_bytes: int = Field(default=1 << 20, ge=1024)
    max_body_bytes: int = Field(default=32 << 20, ge=1024)
    models_timeout_s: float = Field(default=5.0, gt=0)
    max_concurrency: int = Field(default=16, ge=1)  # requests in flight to this upstream
    retries: int = Field(
        default=2, ge=0
    )  # extra tries before any byte arrived (connect, 429/502/503)
    retry_backoff_s: float = Field(default=0.25, ge=0)  # doubled after each try
    breaker_failures: int = Field(default=3, ge=1)  # consecutive failures that open the breaker
    breaker_open_s: float = Field(default=30.0, gt=0)  # how long it stays open before a probe
    models_ttl_s: float = Field(default=60.0, ge=0)  # how long its /v1/models list is reused

    @field_validator("base_url")
    @classmethod
    def http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("api_key_keyring")
    @classmethod
    def service_user(cls, value: str | None) -> str | None:
        if value is not None and value.count("/") < 1:
            raise ValueError('api_key_keyring must be "service/user"')
        return value


class FallbackSettings(BaseModel):
    """Per role, the "UPSTREAM/MODEL" that serves a request the local engine cannot: its model
    does not load (memory budget, load error), the prompt is longer than its context, or the
    oldest request waiting for it has waited longer than `max_queue_wait_s`."""

    model_config = ConfigDict(extra="forbid")

    chat: str | None = None
    completion: str | None = None
    embedding: str | None = None
    max_queue_wait_s: float | None = Field(default=None, ge=0)  # None: never for queueing

    @field_validator("chat", "completion", "embedding")
    @classmethod
    def upstream_model(cls, value: str | None) -> str | None:
        if value is not None and "/" not in value.strip("/"):
            raise ValueError('a fallback is "UPSTREAM/MODEL", e.g. "team/SmolLM2-135M-Instruct"')
        return value

"""What the sidecar sends: the results and notifications of its JSON-RPC methods and the shapes the
HTTP port shares with them (model list entries, usage), as pydantic models.

Both edges build these and nothing else, so a field exists in one place; the editor extension's
TypeScript types in `editor-extension/src/protocol.ts` are generated from them
(`python -m sidecar.wire_ts --write`) and `tests/test_wire.py` fails when the two differ.
Neutral ground: the engine, the LSP edge and the HTTP edge all import it, it imports none of them.
Types only: what builds them lives with what it reads (`sidecar.models.listing` the model list).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from sidecar.completion.options import CompletionOptions
from sidecar.models.kinds import ModelKind
from sidecar.roles import Role

ModelRole = Role  # one role set: sidecar.roles
# How a request ended, everywhere (the engine's Result too); "tool_calls": a chat reply that
# ended with tool calls (sidecar/engine/chat.py).
FinishReason = Literal["stop", "length", "cancelled", "error", "tool_calls"]
ChangeReason = Literal["downloaded", "deleted", "loaded", "unloaded", "selected"]


class Wire(BaseModel):
    """A message the sidecar sends. Unknown fields are refused, so a key added where one is built
    but not here fails at once instead of reaching the editor untyped."""

    model_config = ConfigDict(extra="forbid")


class Usage(Wire):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int = 0) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


# -- models ------------------------------------------------------------------------------------


class ModelEntry(Wire):
    """A local model, as `/v1/models`, `mlx/models/list` and `mlx/models/changed` list it (the
    OpenAI fields first)."""

    id: str
    object: Literal["model"] = "model"
    created: int  # the model directory's mtime
    owned_by: Literal["local"] = "local"
    kind: ModelKind
    path: str
    source: Literal["store", "hf-cache"]
    size_bytes: int
    quantization: str | None
    fim: str | None  # the FIM token family ("qwen", "starcoder", ...), None without FIM tokens
    loaded: bool
    pinned: bool
    roles: list[ModelRole]  # the roles it serves in the editor (none on the HTTP port)


class RoleModels(Wire):
    """The model serving each role in the editor."""

    completion: str
    chat: str
    embedding: str


class CompletionSessionStats(Wire):
    """The editor's inline completions: prompt reuse of recent generations and where the
    answers came from (`sidecar.completion.session.CompletionSession.stats`)."""

    generations: int
    reuse_share_median: float | None
    prompt_tokens: int
    cached_prompt_tokens: int
    recent: list[list[int]]  # [cached, prompt] tokens of each recent generation
    answers: dict[str, int]  # cache, adopted, model, empty, cut_short
    warm_prefilled_tokens: int
    context_chunks: int
    ring_chunks: int


class RemoteModel(Wire):
    """A model an upstream lists (`/v1/models` of the upstream), named `UPSTREAM/MODEL` here."""

    id: str  # "UPSTREAM/MODEL": the id to send
    object: Literal["model"] = "model"
    created: int
    owned_by: str  # the upstream's name
    upstream: str
    model: str  # the upstream's own id


class UpstreamStatus(Wire):
    """One configured upstream: where it is and how it fares; never its key."""

    name: str
    base_url: str
    key_source: Literal["editor", "env", "keyring", "none"]
    breaker: Literal["closed", "open", "half_open"]
    consecutive_failures: int
    in_flight: int
    models: int  # listed at the last successful listing
    error: str | None  # the last listing's error


class UpstreamsResult(Wire):
    """`mlx/upstreams/add|setKey|list`: every upstream's status."""

    upstreams: list[UpstreamStatus]


class ModelList(Wire):
    """`mlx/models/list`."""

    models: list[ModelEntry]
    roles: RoleModels
    remote: list[RemoteModel] = []  # upstreams' models, "UPSTREAM/MODEL" (grouped by upstream)


class LoadedModelStatus(Wire):
    """A model in memory (`mlx/models/load`, `mlx/status` `loaded`)."""

    id: str
    kind: ModelKind
    size_bytes: int
    pinned: bool
    idle_s: float
    busy: bool


class UnloadResult(Wire):
    model: str
    unloaded: bool


class SelectResult(Wire):
    role: ModelRole
    model: str
    roles: RoleModels


class DownloadResult(Wire):
    """`mlx/models/download`."""

    model: ModelEntry
    transferred_bytes: int
    resumed_bytes: int


class DeleteResult(Wire):
    deleted: str
    path: str


# -- status ------------------------------------------------------------------------------------


class Memory(Wire):
    """MLX's own figures (active, buffer cache, peak) and the memory governor's budget, which
    covers the models' weights, the running sequences' KV and the prompt caches (`used`)."""

    active_bytes: int
    cache_bytes: int
    peak_bytes: int
    budget_bytes: int
    models_bytes: int  # weights of the loaded models (measured at load)
    kv_bytes: int  # KV reserved for running sequences (prompt + max_tokens each)
    prompt_cache_bytes: int  # KV kept for reuse (evicted first when memory is short)
    used_bytes: int  # models + kv + prompt cache: what the budget counts
    refused_requests: int  # requests whose KV could not fit the budget even alone
    evicted_prompt_cache_bytes: int  # prompt cache evicted to admit requests


class RunnerStatus(Wire):
    """One loaded model's work (the engine's RunnerStats)."""

    model_id: str
    kind: str
    waiting: dict[str, int]  # not started, by priority class
    prefilling: int
    running: int
    max_batch_seen: int
    reused_prompt_tokens: int
    prefilled_tokens: int
    drafted_tokens: int  # prompt-lookup draft tokens checked (speculative decoding)
    accepted_tokens: int  # of those, the ones the model agreed with
    queue_depth: int


class QueueWait(Wire):
    """Time requests of one priority class waited before they started."""

    count: int
    sum_s: float
    recent_max_s: float | None


class TokenGaps(Wire):
    """Seconds between two tokens of one stream, over recent tokens."""

    recent_max: float | None
    recent_median: float | None


class DraftTokens(Wire):
    """Prompt-lookup speculative decoding since start: draft tokens checked and accepted."""

    drafted: int
    accepted: int


class ModelUsage(Wire):
    """The usage ledger's totals for one model (local, or `UPSTREAM/MODEL`), all days, as
    `mlx/status`, `/health` and `mlx-sidecar usage --json` report them (sidecar/usage/store.py)."""

    model: str
    upstream: str | None  # None: the local engine
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    latency_sum_s: float
    latency_count: int
    latency_mean_s: float | None
    cost: float | None  # from `[prices]` per million tokens; None: no price configured


class EngineStatus(Wire):
    """`Engine.status()`: `/health` adds `status` ("ok"; "unhealthy" with HTTP 503), `mlx/status`
    the editor's state."""

    # False when the worker thread died or a step has run past `watchdog_step_s`; the editor
    # restarts the sidecar then. `health_reason` says why (None when healthy).
    healthy: bool
    health_reason: str | None
    loaded: list[LoadedModelStatus]
    memory: Memory
    device: str
    blas: str | None  # the OpenBLAS library loaded, None without it
    prefill_chunk: int
    queue_depth: int
    running: int
    runners: list[RunnerStatus]
    queue_wait_s: dict[str, QueueWait]  # by priority class
    token_gap_s: TokenGaps
    max_batch_seen: int
    reused_prompt_tokens: int
    prefilled_tokens: int
    draft_tokens: DraftTokens
    max_embed_batch_seen: int
    recent_tokens_per_s: float | None
    requests: dict[str, int]  # finished requests by finish reason
    completion_tokens: int
    prompt_tokens: int
    uptime_s: float
    usage: list[ModelUsage]  # the usage ledger; empty when none is kept


# -- chat and embeddings -------------------------------------------------------------------------


class ToolCall(Wire):
    """A tool call the model made (issue 11): `arguments` is JSON text, as OpenAI sends it."""

    id: str
    name: str
    arguments: str


class Source(Wire):
    """A part of a workspace file an `@workspace` reply was given (lines 1-based, inclusive)."""

    path: str  # relative to the workspace root
    start_line: int
    end_line: int


class ChatResult(Wire):
    """`mlx/chat`. `text` is the answer, without the model's thinking (`reasoning`, unless the
    request asked for `reasoning_format: "inline"`) or tool-call markup (`tool_calls`)."""

    text: str
    finish_reason: FinishReason
    model: str
    usage: Usage
    time_to_first_token_s: float | None
    tokens_per_s: float | None
    served_by: str | None = None  # the upstream that answered; None: the local engine
    fallback_reason: str | None = None  # why an upstream served a local request
    reasoning: str | None = None
    tool_calls: list[ToolCall] = []
    sources: list[Source] = []  # `@workspace`: the chunks put into the prompt, best first


class EmbedResult(Wire):
    """`mlx/embed`: one vector per input, in order."""

    data: list[list[float]]
    model: str
    usage: Usage
    served_by: str | None = None  # the upstream that answered; None: the local engine


# -- workspace index (issue 14) -----------------------------------------------------------------


class WorkspaceStatus(Wire):
    """`mlx/workspace/status` (and `workspace` in `mlx/status`): one workspace's index."""

    root: str | None  # None: no workspace indexed yet
    files: int
    chunks: int
    bytes: int  # of the indexed files' text
    index_bytes: int  # of the index file on disk
    last_indexed_at: float | None  # Unix time of the newest file indexed
    indexing: bool  # a run is in progress
    model: str | None  # the embedding model of the stored vectors


class WorkspaceRun(Wire):
    """What one `mlx/workspace/index` or `mlx/workspace/update` did."""

    files_seen: int
    files_indexed: int
    files_unchanged: int
    files_deleted: int
    files_skipped: int
    files_renamed: int
    chunks_stored: int
    texts_embedded: int
    seconds: float


class WorkspaceIndexResult(Wire):
    """`mlx/workspace/index`, `mlx/workspace/update`: the run and the index after it."""

    run: WorkspaceRun
    status: WorkspaceStatus


class WorkspaceHit(Wire):
    path: str
    start_line: int
    end_line: int
    symbol: str | None  # the function, class or heading the chunk holds
    score: float  # cosine (embedding), BM25 (lexical) or reciprocal-rank sum (fused)
    text: str


class WorkspaceSearchResult(Wire):
    """`mlx/workspace/search`: chunks best first."""

    root: str
    mode: Literal["fused", "embedding", "lexical"]
    hits: list[WorkspaceHit]


# -- notifications -------------------------------------------------------------------------------


class ChatDelta(Wire):
    """`mlx/chat/delta`: text of the `mlx/chat` request that gave `stream_token`, as it is made;
    `reasoning`: thinking made since the last delta; `tool_calls`: calls completed since."""

    stream_token: str | int
    delta: str
    reasoning: str | None = None
    tool_calls: list[ToolCall] | None = None


class ModelsChanged(Wire):
    """`mlx/models/changed`: the local models after a download, delete, load, unload or select."""

    reason: ChangeReason
    model: str | None
    models: list[ModelEntry]


class EditorStatus(EngineStatus):
    """`mlx/status`: the engine's state, and the editor's roles, options and open documents."""

    http_url: str | None  # the OpenAI port, when the editor asked for one
    roles: RoleModels
    completion: CompletionOptions
    completion_session: CompletionSessionStats
    open_documents: int
    upstreams: list[UpstreamStatus]  # each upstream's URL, key source, breaker (never its key)
    workspace: WorkspaceStatus  # the index of the workspace last indexed (root None: none)

"""The Hugging Face hub: search models, download one into the store, delete one.

Downloads stream each needed file over HTTP (`/resolve/<commit>/<file>`) into a staging folder
inside the store (`<models_dir>/.downloads/<owner>--<name>`), with byte progress, a cancel flag
checked between chunks, and resume: an interrupted file continues with an HTTP Range request at
the next pull. The staged model is verified (a lazy load by kind in a child process, so this
thread never touches MLX) and then renamed into place (`<models_dir>/<owner>/<name>`), so the
store only ever lists complete models. A cancelled download removes its staging folder.

`HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE` are read at call time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2 as httpx  # huggingface_hub's HTTP client
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from sidecar.mlx_cleanup import clear_thread_streams
from sidecar.models.kinds import ModelKind, detect_kind, fim_family
from sidecar.models.store import (
    InvalidModelIdError,
    ModelInfo,
    ModelStore,
    describe,
    validate_model_id,
)

log = logging.getLogger(__name__)

DEFAULT_AUTHOR = "mlx-community"
DEFAULT_ENDPOINT = "https://huggingface.co"
STAGING = ".downloads"
CHUNK = 1 << 20
PROGRESS_EVERY_S = 0.1
VERIFY_TIMEOUT_S = 600

# What a model needs; everything else in a repo (READMEs, images, GGUF/PyTorch copies) is skipped.
NEEDED_FILES = (
    "config*.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    "spiece.model",
    "*.tiktoken",
    "*.safetensors",
    "model.safetensors.index.json",
    "*.jinja",
    "chat_template.json",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
)
QUANT_NAME = re.compile(
    r"(?:^|[-_])((?:mx|nv)?fp4|\d+(?:\.\d+)?-?bit|bf16|fp16|fp32|float16|float32)\b", re.I
)
# The hub's task tag where it settles the kind (its config excerpt lacks `vision_config`).
PIPELINE_KINDS: dict[str, ModelKind] = {
    "feature-extraction": "embedding",
    "sentence-similarity": "embedding",
    "image-text-to-text": "vision",
    "image-to-text": "vision",
    "visual-question-answering": "vision",
}
FIM_NAME = {
    "starcoder": re.compile(r"starcoder", re.I),
    "codellama": re.compile(r"codellama", re.I),
    "deepseek": re.compile(r"deepseek-coder", re.I),
    "codestral": re.compile(r"codestral", re.I),
    "qwen": re.compile(r"qwen2\.5|qwen3", re.I),
}


class HubError(RuntimeError):
    """A hub operation failed; the message is meant for the user."""


class DownloadCancelledError(HubError):
    pass


@dataclass
class HubModel:
    id: str
    kind: ModelKind
    size_bytes: int | None  # the files a pull would fetch
    quantization: str | None
    fim: str | None  # FIM token family, from the tokenizer config or (marked "?") the name
    downloads: int | None = None
    likes: int | None = None
    last_modified: str | None = None
    gated: bool = False
    local: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DownloadProgress:
    repo_id: str
    file: str
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    rate_bps: float  # bytes per second transferred in this pull
    resumed_bytes: int = 0  # bytes already on disk from an interrupted pull

    @property
    def percent(self) -> int:
        return int(100 * self.bytes_done / self.bytes_total) if self.bytes_total else 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "percent": self.percent}


@dataclass
class RemoteFile:
    name: str
    size: int | None
    sha256: str | None  # LFS files only


@dataclass
class DownloadStats:
    """What one pull moved over the network (tests and the demo read this)."""

    transferred_bytes: int = 0
    resumed_bytes: int = 0
    files: list[str] = field(default_factory=list)


# -- environment ------------------------------------------------------------------------------


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def token() -> str | None:
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    from huggingface_hub import get_token

    return get_token()


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _require_online(action: str) -> None:
    if offline():
        raise HubError(f"cannot {action}: offline mode is on (HF_HUB_OFFLINE is set)")


def _api() -> HfApi:
    return HfApi(endpoint=endpoint(), token=token(), library_name="mlx-sidecar")


def _hub_error(repo_id: str, e: Exception) -> HubError:
    """Turn huggingface_hub/httpx errors into one clear sentence."""
    if isinstance(e, GatedRepoError):
        return HubError(
            f"{repo_id} is gated: accept its terms on {endpoint()}/{repo_id} and set HF_TOKEN"
        )
    if isinstance(e, RepositoryNotFoundError):
        hint = "" if token() else " (if it is private, set HF_TOKEN)"
        return HubError(f"no model {repo_id!r} on {endpoint()}{hint}")
    if isinstance(e, RevisionNotFoundError):
        return HubError(f"{repo_id}: revision not found")
    if isinstance(e, EntryNotFoundError):
        return HubError(f"{repo_id}: a file listed by the hub is missing ({e})")
    if isinstance(e, HfHubHTTPError):
        status = e.response.status_code if e.response is not None else "?"
        return HubError(f"{repo_id}: the hub answered HTTP {status}")
    if isinstance(e, httpx.TransportError | OSError):
        return HubError(f"cannot reach {endpoint()}: {e}")
    return HubError(f"{repo_id}: {e}")


# -- search -----------------------------------------------------------------------------------


HALF_NAMES = {"bf16": "bfloat16", "fp16": "float16", "float16": "float16", "fp32": "float32"}
DTYPE_NAMES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}


def guess_quantization(name: str, safetensors_dtypes: Iterable[str] = ()) -> str | None:
    """From the repo name (`-4bit`, `-bf16`, ...) or else the safetensors dtypes."""
    m = QUANT_NAME.search(name.rsplit("/", 1)[-1])
    if m:
        q = m.group(1).lower().replace("-", "")
        return q.replace("bit", "-bit") if q.endswith("bit") else HALF_NAMES.get(q, q)
    dtypes = {d.upper() for d in safetensors_dtypes}
    if "U32" in dtypes:
        return "quantized"
    for d, label in DTYPE_NAMES.items():
        if d in dtypes:
            return label
    return None


def guess_fim_from_name(name: str) -> str | None:
    for family, pattern in FIM_NAME.items():
        if pattern.search(name):
            return family
    return None


def _fim_from_tokenizer_config(cfg: dict[str, Any]) -> str | None:
    tokens = {
        t.get("content")
        for t in (cfg.get("added_tokens_decoder") or {}).values()
        if isinstance(t, dict)
    }
    tokens.update(t for t in cfg.get("additional_special_tokens") or [] if isinstance(t, str))
    return fim_family({t for t in tokens if t})


def is_needed(filename: str) -> bool:
    """Top-level model files only (a repo's `onnx/`, `original/` copies are skipped)."""
    if "/" in filename:
        return filename in NEEDED_FILES
    return any(fnmatch(filename, pattern) for pattern in NEEDED_FILES)


def needed_files(files: Iterable[RemoteFile]) -> list[RemoteFile]:
    needed = [f for f in files if is_needed(f.name)]
    # Mistral-style repos carry the weights twice: keep the HF layout, not `consolidated`.
    if any(f.name.startswith("model") and f.name.endswith(".safetensors") for f in needed):
        needed = [f for f in needed if not f.name.startswith("consolidated")]
    return needed


def _remote_files(info: Any) -> list[RemoteFile]:
    return [
        RemoteFile(
            s.rfilename,
            s.lfs.size if s.lfs else s.size,
            s.lfs.sha256 if s.lfs else None,
        )
        for s in info.siblings or []
    ]


def _details(repo_id: str, session_token: str | None) -> tuple[int | None, str | None]:
    """(size of the needed files, FIM family from tokenizer_config.json) for one search result."""
    api = HfApi(endpoint=endpoint(), token=session_token, library_name="mlx-sidecar")
    try:
        info = api.model_info(repo_id, files_metadata=True)
    except Exception as e:  # a result we cannot detail still lists
        log.debug("model_info %s failed: %s", repo_id, e)
        return None, None
    files = needed_files(_remote_files(info))
    size = sum(f.size or 0 for f in files) if files else None
    fim = None
    if any(f.name == "tokenizer_config.json" for f in files):
        try:
            url = f"{endpoint()}/{repo_id}/resolve/{info.sha or 'main'}/tokenizer_config.json"
            r = get_session().get(url, headers=build_hf_headers(token=session_token), timeout=10)
            hf_raise_for_status(r)
            fim = _fim_from_tokenizer_config(r.json())
        except Exception as e:
            log.debug("tokenizer_config %s failed: %s", repo_id, e)
    return size, fim


def search(
    query: str = "",
    *,
    author: str | None = DEFAULT_AUTHOR,
    limit: int = 20,
    sort: str = "downloads",
    details: bool = True,
    store: ModelStore | None = None,
) -> list[HubModel]:
    """Models on the hub matching `query` (by `author`, most downloaded first). With `details`,
    each result's size and FIM family come from its file list and tokenizer config (one
    request each, in parallel)."""
    _require_online("search the hub")
    if limit < 1 or limit > 100:
        raise HubError("limit must be between 1 and 100")
    try:
        found = list(
            _api().list_models(
                search=query or None,
                author=author or None,
                sort=sort,  # type: ignore[arg-type]
                limit=limit,
                expand=[  # type: ignore[list-item]
                    "downloads",
                    "likes",
                    "tags",
                    "config",
                    "gated",
                    "lastModified",
                    "safetensors",
                    "siblings",
                    "pipeline_tag",
                ],
            )
        )
    except Exception as e:
        raise _hub_error(f"search {query!r}", e) from e
    extra: list[tuple[int | None, str | None]] = [(None, None)] * len(found)
    if details and found:
        session_token = token()
        with ThreadPoolExecutor(max_workers=min(8, len(found))) as pool:
            extra = list(pool.map(lambda m: _details(m.id, session_token), found))
    local = set(store.entries()) if store is not None else set()
    results = []
    for m, (size, fim) in zip(found, extra, strict=True):
        config = m.config if isinstance(m.config, dict) else {}
        files = {s.rfilename for s in m.siblings or []}
        dtypes = (m.safetensors.parameters or {}).keys() if m.safetensors else ()
        results.append(
            HubModel(
                id=m.id,
                kind=PIPELINE_KINDS.get(m.pipeline_tag or "")
                or detect_kind(config, m.id + " " + " ".join(m.tags or []), files),
                size_bytes=size,
                quantization=guess_quantization(m.id, dtypes),
                fim=fim or (f"{g}?" if (g := guess_fim_from_name(m.id)) else None),
                downloads=m.downloads,
                likes=m.likes,
                last_modified=m.last_modified.isoformat() if m.last_modified else None,
                gated=bool(m.gated),
                local=m.id in local,
            )
        )
    return results


# -- download ---------------------------------------------------------------------------------

_active: dict[str, threading.Event] = {}
_active_lock = threading.Lock()


def _split_repo(repo_id: str) -> tuple[str, str]:
    validate_model_id(repo_id)
    if "/" not in repo_id:
        raise InvalidModelIdError(f"hub ids look like 'owner/name', not {repo_id!r}")
    owner, name = repo_id.split("/", 1)
    return owner, name


def staging_dir(store: ModelStore, repo_id: str) -> Path:
    owner, name = _split_repo(repo_id)
    return store.models_dir / STAGING / f"{owner}--{name}"


def target_dir(store: ModelStore, repo_id: str) -> Path:
    owner, name = _split_repo(repo_id)
    return store.models_dir / owner / name


class _Meter:
    """Byte counter that calls `progress` at most every PROGRESS_EVERY_S (and at the end)."""

    def __init__(
        self,
        repo_id: str,
        files: list[RemoteFile],
        progress: Callable[[DownloadProgress], None] | None,
        resumed: int,
    ) -> None:
        self.repo_id = repo_id
        self.files_total = len(files)
        self.bytes_total = sum(f.size or 0 for f in files)
        self.progress = progress
        self.done = resumed
        self.resumed = resumed
        self.moved = 0
        self.files_done = 0
        self.file = ""
        self.started = time.monotonic()
        self.last_report = 0.0

    def add(self, n: int) -> None:
        self.done += n
        self.moved += n
        self.report()

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or (not force and now - self.last_report < PROGRESS_EVERY_S):
            return
        self.last_report = now
        elapsed = max(now - self.started, 1e-6)
        self.progress(
            DownloadProgress(
                repo_id=self.repo_id,
                file=self.file,
                files_done=self.files_done,
                files_total=self.files_total,
                bytes_done=self.done,
                bytes_total=self.bytes_total,
                rate_bps=self.moved / elapsed,
                resumed_bytes=self.resumed,
            )
        )


def _fetch(
    repo_id: str,
    commit: str,
    remote: RemoteFile,
    dest: Path,
    meter: _Meter,
    cancel: threading.Event,
    session_token: str | None,
) -> None:
    """Stream one file into `dest`, continuing a `.part` file left by an interrupted pull."""
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if remote.size is not None and have > remote.size:
        part.unlink()
        meter.done -= have
        have = 0
    digest = hashlib.sha256() if remote.sha256 else None
    if digest is not None and have:
        with part.open("rb") as f:
            while block := f.read(CHUNK):
                digest.update(block)
    headers = build_hf_headers(token=session_token, library_name="mlx-sidecar")
    url = f"{endpoint()}/{repo_id}/resolve/{commit}/{quote(remote.name)}"
    if remote.size is None or have < remote.size:
        if have:
            headers["Range"] = f"bytes={have}-"
        with get_session().stream(
            "GET", url, headers=headers, follow_redirects=True, timeout=httpx.Timeout(30.0)
        ) as r:
            hf_raise_for_status(r)
            if have and r.status_code != 206:  # the server ignored the range: start over
                meter.done -= have
                have = 0
                digest = hashlib.sha256() if remote.sha256 else None
            with part.open("ab" if have else "wb") as f:
                for block in r.iter_bytes(CHUNK):
                    if cancel.is_set():
                        raise DownloadCancelledError(f"download of {repo_id} cancelled")
                    f.write(block)
                    if digest is not None:
                        digest.update(block)
                    meter.add(len(block))
    size = part.stat().st_size
    if remote.size is not None and size != remote.size:
        raise HubError(f"{repo_id}/{remote.name}: got {size} bytes, expected {remote.size}")
    if digest is not None and digest.hexdigest() != remote.sha256:
        part.unlink()
        raise HubError(f"{repo_id}/{remote.name}: checksum mismatch; pull again")
    part.rename(dest)


def verify_loads(path: Path, kind: ModelKind, timeout_s: float = VERIFY_TIMEOUT_S) -> None:
    """Load the model lazily (config, weights' names and shapes, tokenizer) in a child process,
    so this thread never touches MLX and a broken model cannot take the engine down."""
    code = "import sys; from sidecar.models.hub import _verify_here; _verify_here(sys.argv[1], sys.argv[2])"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(path), kind],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        raise HubError(f"loading the downloaded model took over {timeout_s:.0f} s") from e
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit code {done.returncode}"
        raise HubError(f"the downloaded model does not load as a {kind} model: {reason}")


def _verify_here(path: str, kind: str) -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)  # the check yields the CPU to the engine's running batches
    import sidecar  # noqa: F401  (OpenBLAS before mlx)

    if kind == "text":
        from mlx_lm import load

        load(path, lazy=True)
    elif kind == "embedding":
        import mlx_embeddings

        mlx_embeddings.load(path, lazy=True)
    else:
        from mlx_vlm import load as load_vlm

        load_vlm(path, lazy=True)
    # or the child may abort at exit and fail a good download (see clear_thread_streams)
    clear_thread_streams()


def download(
    repo_id: str,
    store: ModelStore,
    *,
    revision: str | None = None,
    progress: Callable[[DownloadProgress], None] | None = None,
    cancel: threading.Event | None = None,
    verify: bool = True,
    retries: int = 2,
    stats: DownloadStats | None = None,
) -> ModelInfo:
    """Download `owner/name` into the store and return the new local model.

    Blocking; call it from a thread. `cancel.set()` stops it at the next chunk and removes the
    partial files. A network failure keeps them: the next pull resumes where this one stopped
    (`retries` resumes happen within this call first)."""
    owner, _name = _split_repo(repo_id)
    _require_online(f"download {repo_id}")
    cancel = cancel or threading.Event()
    stats = stats if stats is not None else DownloadStats()
    target = target_dir(store, repo_id)
    if target.is_dir():
        return describe(repo_id, target, "store")
    with _active_lock:
        if repo_id in _active:
            raise HubError(f"{repo_id} is already being downloaded")
        _active[repo_id] = cancel
    staging = staging_dir(store, repo_id)
    try:
        return _download(
            repo_id, store, revision, progress, cancel, verify, retries, stats, staging, target
        )
    except DownloadCancelledError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        with _active_lock:
            _active.pop(repo_id, None)
        _remove_if_empty(store.models_dir / STAGING)
        _remove_if_empty(store.models_dir / owner)


def _download(
    repo_id: str,
    store: ModelStore,
    revision: str | None,
    progress: Callable[[DownloadProgress], None] | None,
    cancel: threading.Event,
    verify: bool,
    retries: int,
    stats: DownloadStats,
    staging: Path,
    target: Path,
) -> ModelInfo:
    try:
        info = _api().model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as e:
        raise _hub_error(repo_id, e) from e
    commit = info.sha or revision or "main"
    files = needed_files(_remote_files(info))
    if not any(f.name.endswith(".safetensors") for f in files):
        others = ", ".join(sorted(f.name for f in _remote_files(info))[:8]) or "no files"
        raise HubError(
            f"{repo_id} has no .safetensors weights ({others}); for a GGUF file use "
            "`mlx-sidecar models import-gguf`"
        )
    state_file = staging / ".commit"
    if staging.exists() and (not state_file.is_file() or state_file.read_text().strip() != commit):
        shutil.rmtree(staging)  # partial files of another revision
    staging.mkdir(parents=True, exist_ok=True)
    state_file.write_text(commit)
    session_token = token()

    def on_disk(f: RemoteFile) -> int:
        done = staging / f.name
        if done.is_file():
            return done.stat().st_size
        part = staging / (f.name + ".part")
        return part.stat().st_size if part.is_file() else 0

    resumed = sum(on_disk(f) for f in files)
    stats.resumed_bytes = resumed
    meter = _Meter(repo_id, files, progress, resumed)
    meter.report(force=True)
    for f in files:
        meter.file = f.name
        dest = staging / f.name
        if not dest.is_file():
            for attempt in range(retries + 1):
                if cancel.is_set():
                    raise DownloadCancelledError(f"download of {repo_id} cancelled")
                try:
                    _fetch(repo_id, commit, f, dest, meter, cancel, session_token)
                    break
                except (httpx.TransportError, httpx.StreamError) as e:
                    if attempt == retries:
                        stats.transferred_bytes = meter.moved
                        raise HubError(
                            f"download of {repo_id} interrupted ({e}); run the pull again to resume"
                        ) from e
                    log.warning("%s/%s interrupted (%s); resuming", repo_id, f.name, e)
                except HfHubHTTPError as e:
                    stats.transferred_bytes = meter.moved
                    raise _hub_error(repo_id, e) from e
            stats.files.append(f.name)
        meter.files_done += 1
        meter.report(force=True)
    stats.transferred_bytes = meter.moved
    if cancel.is_set():
        raise DownloadCancelledError(f"download of {repo_id} cancelled")
    state_file.unlink()
    config_kind = describe(repo_id, staging, "store").kind
    if verify:
        try:
            verify_loads(staging, config_kind)
        except HubError:
            shutil.rmtree(staging, ignore_errors=True)  # complete but broken: do not resume it
            raise
    (staging / "hub.json").write_text(
        json.dumps({"repo_id": repo_id, "commit": commit, "endpoint": endpoint()})
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)
    log.info("downloaded %s (%d bytes moved, %d resumed)", repo_id, meter.moved, resumed)
    return describe(repo_id, target, "store")


def cancel_download(repo_id: str) -> bool:
    with _active_lock:
        event = _active.get(repo_id)
    if event is None:
        return False
    event.set()
    return True


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


# -- delete -----------------------------------------------------------------------------------


def delete(store: ModelStore, model_id: str) -> Path:
    """Delete a model from the store (never anything outside it; '..' ids are refused)."""
    validate_model_id(model_id)
    return store.remove(model_id)


__all__ = [
    "DEFAULT_AUTHOR",
    "DownloadCancelledError",
    "DownloadProgress",
    "DownloadStats",
    "HubError",
    "HubModel",
    "cancel_download",
    "delete",
    "download",
    "search",
]

"""Download a model from the hub into the store, resumably, with byte progress and a cancel flag.

Each needed file streams over HTTP (`/resolve/<commit>/<file>`) into a staging folder inside the
store (`<models_dir>/.downloads/<owner>--<name>`); an interrupted file continues with an HTTP
Range request at the next pull. The staged model is verified (`verify.verify_loads`) and then
renamed into place (`<models_dir>/<owner>/<name>`, `atomic.publish_dir`), so the store only ever
lists complete models. A cancelled download removes its staging folder.

Why not `huggingface_hub.snapshot_download(local_dir=..., tqdm_class=...)`, which also resumes and
reports bytes: it cannot be cancelled. It has no cancel argument; the only way out is raising
from the progress bar's `update`, which is undocumented, and for Xet-backed repos (the default
for new uploads) the bytes move in hf_xet's Rust threads, where an exception in the callback
does not stop the transfer. The editor's cancel (`$/cancelRequest`,
`window/workDoneProgress/cancel`) must stop the transfer within a chunk and remove the partial
files. Its `local_dir` mode also writes `.cache/huggingface/` bookkeeping into the model
directory. The HTTP client, headers, auth and error types below are huggingface_hub's own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2 as httpx  # huggingface_hub's HTTP client
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from sidecar.errors import DownloadCancelledError, HubError, InvalidModelIdError
from sidecar.models.atomic import publish_dir
from sidecar.models.hub.client import api, endpoint, hub_error, require_online, token
from sidecar.models.hub.files import RemoteFile, needed_files, remote_files
from sidecar.models.hub.verify import verify_loads
from sidecar.models.store import ModelInfo, ModelStore, describe, validate_model_id

log = logging.getLogger(__name__)

STAGING = ".downloads"
CHUNK = 1 << 20
PROGRESS_EVERY_S = 0.1


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
class DownloadStats:
    """What one pull moved over the network (tests and the demo read this)."""

    transferred_bytes: int = 0
    resumed_bytes: int = 0
    files: list[str] = field(default_factory=list)


_active: set[str] = set()  # repos being downloaded, one pull each at a time
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
    require_online(f"download {repo_id}")
    cancel = cancel or threading.Event()
    stats = stats if stats is not None else DownloadStats()
    target = target_dir(store, repo_id)
    if target.is_dir():
        return describe(repo_id, target, "store")
    with _active_lock:
        if repo_id in _active:
            raise HubError(f"{repo_id} is already being downloaded")
        _active.add(repo_id)
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
            _active.discard(repo_id)
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
        info = api().model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as e:
        raise hub_error(repo_id, e) from e
    commit = info.sha or revision or "main"
    files = needed_files(remote_files(info))
    if not any(f.name.endswith(".safetensors") for f in files):
        others = ", ".join(sorted(f.name for f in remote_files(info))[:8]) or "no files"
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
                    raise hub_error(repo_id, e) from e
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
    publish_dir(staging, target)
    log.info("downloaded %s (%d bytes moved, %d resumed)", repo_id, meter.moved, resumed)
    return describe(repo_id, target, "store")


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()

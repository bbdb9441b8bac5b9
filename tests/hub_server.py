"""A small, real HTTP server that answers the Hugging Face hub endpoints huggingface_hub and the
sidecar's downloader call, serving model folders from disk. Tests point `HF_ENDPOINT` at it.

Endpoints: GET /api/models (search: author, search, sort, limit; every field whatever `expand`
asks), GET /api/models/{repo}[/revision/{rev}] (siblings; with blobs=true sizes, blob ids and
LFS sha256), HEAD/GET /{repo}/resolve/{rev}/{file} (ETag, X-Repo-Commit, Content-Length, Range).
A gated repo answers 403 GatedRepo without the right token; an unknown one 404 RepoNotFound.

Test hooks: `drop_once[(repo, file)] = n` closes the connection after n body bytes, once;
`delay_s` sleeps between 64 KiB chunks (to cancel mid-file); `bytes_sent` and `requests` record
what was served.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SEND_CHUNK = 64 * 1024
_sha_cache: dict[tuple[str, int, float], str] = {}


def file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime)
    if key not in _sha_cache:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        _sha_cache[key] = h.hexdigest()
    return _sha_cache[key]


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    id: str
    files: dict[str, Path]  # repo path -> file on disk
    downloads: int = 0
    likes: int = 0
    tags: list[str] = field(default_factory=list)
    gated: bool = False
    pipeline_tag: str | None = None

    @property
    def sha(self) -> str:
        listing = ";".join(f"{n}:{p.stat().st_size}" for n, p in sorted(self.files.items()))
        return hashlib.sha1(f"{self.id};{listing}".encode()).hexdigest()

    def config(self) -> dict[str, Any]:
        path = self.files.get("config.json")
        if path is None:
            return {}
        full = json.loads(path.read_text())
        return {k: full[k] for k in ("architectures", "model_type") if k in full}

    def sibling(self, name: str, blobs: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"rfilename": name}
        if blobs:
            path = self.files[name]
            size = path.stat().st_size
            if name.endswith(".safetensors"):
                sha = file_sha256(path)
                entry.update(
                    blobId=sha[:40],
                    size=size,
                    lfs={"size": size, "sha256": sha, "pointerSize": 134},
                )
            else:
                entry.update(blobId=git_blob_id(path.read_bytes()), size=size)
        return entry

    def etag(self, name: str) -> str:
        path = self.files[name]
        if name.endswith(".safetensors"):
            return file_sha256(path)
        return git_blob_id(path.read_bytes())

    def to_json(self, blobs: bool = False) -> dict[str, Any]:
        owner = self.id.split("/")[0]
        params = (
            sum(p.stat().st_size for n, p in self.files.items() if n.endswith(".safetensors")) // 4
        )
        return {
            "_id": hashlib.md5(self.id.encode()).hexdigest()[:24],
            "id": self.id,
            "modelId": self.id,
            "author": owner,
            "sha": self.sha,
            "lastModified": "2025-01-01T00:00:00.000Z",
            "createdAt": "2024-06-01T00:00:00.000Z",
            "private": False,
            "gated": "manual" if self.gated else False,
            "disabled": False,
            "downloads": self.downloads,
            "likes": self.likes,
            "tags": self.tags,
            "library_name": "mlx",
            "pipeline_tag": self.pipeline_tag,
            "config": self.config(),
            "siblings": [self.sibling(n, blobs) for n in sorted(self.files)],
            "safetensors": {"parameters": {"F32": params}, "total": params},
        }


def repo_from_dir(repo_id: str, folder: Path, **kw: Any) -> Repo:
    files = {
        str(p.relative_to(folder)): p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }
    return Repo(repo_id, files, **kw)


class HubServer:
    def __init__(self, repos: list[Repo], token: str | None = "hf_test_token") -> None:
        self.repos = {r.id: r for r in repos}
        self.token = token
        self.drop_once: dict[tuple[str, str], int] = {}
        self.delay_s = 0.0
        self.bytes_sent = 0
        self.sent_by_repo: dict[
            str, int
        ] = {}  # body bytes per repo (other tests' stragglers aside)
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, range)
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server's address
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset_counters(self) -> None:
        with self.lock:
            self.bytes_sent = 0
            self.sent_by_repo.clear()
            self.requests.clear()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self.route(head=True)

            def do_GET(self) -> None:
                self.route(head=False)

            # -- helpers ----------------------------------------------------------------

            def send_json(
                self, status: int, data: Any, headers: dict[str, str] | None = None
            ) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def error(self, status: int, code: str, message: str) -> None:
                self.send_json(
                    status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message}
                )

            def authorized(self, repo: Repo) -> bool:
                if not repo.gated:
                    return True
                return self.headers.get("Authorization") == f"Bearer {hub.token}"

            def repo_or_error(self, repo_id: str) -> Repo | None:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    self.error(404, "RepoNotFound", "Repository not found")
                    return None
                if not self.authorized(repo):
                    self.error(403, "GatedRepo", "Access to this model is restricted")
                    return None
                return repo

            # -- routes -----------------------------------------------------------------

            def route(self, head: bool) -> None:
                url = urlsplit(self.path)
                path = unquote(url.path)
                query = parse_qs(url.query)
                with hub.lock:
                    hub.requests.append((self.command, path, self.headers.get("Range")))
                if path == "/api/models":
                    return self.search(query)
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
                if m:
                    return self.model_info(m.group(1), query)
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if m:
                    return self.resolve(m.group(1), m.group(2), m.group(3), head)
                self.error(404, "EntryNotFound", f"no route {path}")

            def search(self, query: dict[str, list[str]]) -> None:
                author = (query.get("author") or [""])[0]
                text = (query.get("search") or [""])[0].lower()
                limit = int((query.get("limit") or ["1000"])[0])
                found = [
                    r
                    for r in hub.repos.values()
                    if (not author or r.id.startswith(author + "/")) and text in r.id.lower()
                ]
                sort = (query.get("sort") or ["downloads"])[0]
                if sort in ("downloads", "likes"):
                    found.sort(key=lambda r: getattr(r, sort), reverse=True)
                self.send_json(200, [r.to_json() for r in found[:limit]])

            def model_info(self, repo_id: str, query: dict[str, list[str]]) -> None:
                repo = self.repo_or_error(repo_id)
                if repo is not None:
                    blobs = (query.get("blobs") or ["false"])[0].lower() == "true"
                    self.send_json(200, repo.to_json(blobs=blobs))

            def resolve(self, repo_id: str, rev: str, name: str, head: bool) -> None:
                repo = self.repo_or_error(repo_id)
                if repo is None:
                    return
                if rev not in ("main", repo.sha):
                    return self.error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                if name not in repo.files:
                    return self.error(404, "EntryNotFound", f"{name} does not exist")
                path = repo.files[name]
                size = path.stat().st_size
                start, end, status = 0, size - 1, 200
                rng = self.headers.get("Range")
                if rng:
                    m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
                    if not m or int(m.group(1)) >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                    status = 206
                length = end - start + 1
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", f'"{repo.etag(name)}"')
                self.send_header("X-Repo-Commit", repo.sha)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if head:
                    return
                drop_at = None
                with hub.lock:
                    drop_at = hub.drop_once.pop((repo_id, name), None)
                sent = 0
                with path.open("rb") as f:
                    f.seek(start)
                    while sent < length:
                        n = min(SEND_CHUNK, length - sent)
                        if drop_at is not None and sent + n > drop_at:
                            n = drop_at - sent
                        block = f.read(n)
                        try:
                            self.wfile.write(block)
                            self.wfile.flush()
                        except OSError:  # the client went away (e.g. a cancelled pull)
                            self.close_connection = True
                            return
                        sent += len(block)
                        with hub.lock:
                            hub.bytes_sent += len(block)
                            hub.sent_by_repo[repo_id] = hub.sent_by_repo.get(repo_id, 0) + len(
                                block
                            )
                        if drop_at is not None and sent >= drop_at:
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        if hub.delay_s:
                            time.sleep(hub.delay_s)

        return Handler


# -- the repos the tests serve -----------------------------------------------------------------

TINY = "mlx-community/tiny-fim-qwen"
MINILM = "mlx-community/all-MiniLM-L6-v2"
SMOLLM = "mlx-community/SmolLM2-135M-Instruct"
GATED = "acme/gated-tiny"
BROKEN = "acme/broken-tiny"
WEIGHTLESS = "mlx-community/gguf-only"


def default_repos(models_dir: Path, scratch: Path) -> list[Repo]:
    """The default models, a tiny Qwen-FIM model (with a README a pull must skip), a gated
    copy of it, one that does not load (a text config with an embedding model's weights) and
    one with no weights."""
    from tests.tiny_models import tiny_fim_model

    tiny = models_dir / tiny_fim_model(models_dir, "qwen")
    readme = scratch / "README.md"
    readme.write_text("# a model card the sidecar does not need\n")
    tiny_repo = repo_from_dir(TINY, tiny, downloads=10, tags=["mlx", "qwen2"])
    tiny_repo.files["README.md"] = readme
    broken = repo_from_dir(BROKEN, tiny)
    broken.files["model.safetensors"] = models_dir / "all-MiniLM-L6-v2" / "model.safetensors"
    return [
        repo_from_dir(
            SMOLLM,
            models_dir / "SmolLM2-135M-Instruct",
            downloads=1000,
            tags=["mlx", "text-generation"],
            pipeline_tag="text-generation",
        ),
        repo_from_dir(
            MINILM,
            models_dir / "all-MiniLM-L6-v2",
            downloads=500,
            tags=["mlx", "sentence-transformers"],
            pipeline_tag="sentence-similarity",
        ),
        tiny_repo,
        repo_from_dir(GATED, tiny, gated=True),
        broken,
        Repo(WEIGHTLESS, {"README.md": readme}),
    ]

"""One workspace's index: a full or incremental run over its files, updates for saved, deleted
and renamed files, and retrieval.

Incremental by content: a file whose size and mtime are as stored is not read; one that is read
and hashes as stored is not chunked; a changed file is re-chunked and only its chunks whose text
changed are embedded (the others keep their stored vectors). A renamed file moves its chunks.

Embeddings go through the engine (`Engine.embed`) at BULK priority, in calls of
`workspace_embed_batch` texts, which the engine's embedding runner runs in slices between
decode steps: a typing user's completions and a streaming chat go first. A run is cancellable
between calls (asyncio cancellation, or `cancel`); a file is stored only once all its chunks are
embedded, so a cancelled run leaves nothing half-indexed and the next run picks up the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.engine.requests import Priority
from sidecar.errors import IndexCancelled
from sidecar.uris import uri_to_path
from sidecar.workspace import retrieval
from sidecar.workspace.chunker import FileChunk, chunk_file
from sidecar.workspace.pacing import Pacer
from sidecar.workspace.store import FileRecord, IndexStore, now
from sidecar.workspace.walker import FileEntry, read_text, stat_entry, walk

log = logging.getLogger(__name__)


Progress = Callable[[int, int, str], None]  # (done, total, message)


@dataclass
class IndexRun:
    """What one run did: its own counters, not cumulative ones."""

    files_seen: int = 0
    files_indexed: int = 0  # read, changed, chunked, stored
    files_unchanged: int = 0
    files_deleted: int = 0
    files_skipped: int = 0  # binary, unreadable, grown past the limit, or not chunkable
    files_renamed: int = 0
    chunks_stored: int = 0
    texts_embedded: int = 0  # texts sent to the engine to embed in this run
    seconds: float = 0.0


@dataclass
class Pending:
    """A changed file waiting for its chunks' vectors."""

    entry: FileEntry
    digest: str
    chunks: list[FileChunk]
    hashes: list[str]
    vectors: list[bytes | None]
    missing: list[int] = field(default_factory=list)  # indexes of chunks still to embed


def digest(data: str) -> str:
    return hashlib.blake2b(data.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class WorkspaceIndex:
    def __init__(
        self,
        root: Path,
        store: IndexStore,
        engine: Engine,
        settings: Settings,
        user_activity: Callable[[], float] | None = None,
    ) -> None:
        self.root = root
        self.store = store
        self.engine = engine
        self.settings = settings
        self.lock = asyncio.Lock()  # one run or update at a time
        self.indexing = False
        self.last_run: IndexRun | None = None
        # time.monotonic() of the user's last request (the editor's completions), if known
        self.user_activity = user_activity

    @property
    def model(self) -> str:
        return self.settings.embedding_model

    # -- indexing ------------------------------------------------------------------------------

    async def index(
        self,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        model: str | None = None,
    ) -> IndexRun:
        """Bring the index up to date with the files on disk (the first run indexes all)."""
        async with self.lock:
            self.indexing = True
            try:
                return await self._index(progress, cancel, model or self.model)
            finally:
                self.indexing = False

    async def _index(
        self, progress: Progress | None, cancel: threading.Event | None, model: str
    ) -> IndexRun:
        started = time.perf_counter()
        run = IndexRun()
        await asyncio.to_thread(self._check_model, model)
        entries = await asyncio.to_thread(
            lambda: list(
                walk(
                    self.root,
                    self.settings.workspace_max_file_bytes,
                    self.settings.workspace_max_files,
                )
            )
        )
        known = await asyncio.to_thread(self.store.files)
        seen = {e.path for e in entries}
        gone = [p for p in known if p not in seen]
        if gone:
            run.files_deleted = await asyncio.to_thread(self.store.delete, gone)
        run.files_seen = len(entries)
        stale = [
            e
            for e in entries
            if (k := known.get(e.path)) is None or (k.size, k.mtime_ns) != (e.size, e.mtime_ns)
        ]
        run.files_unchanged = len(entries) - len(stale)
        await self._embed_files(stale, known, run, progress, cancel, model)
        run.seconds = round(time.perf_counter() - started, 3)
        self.last_run = run
        await asyncio.to_thread(self.store.set_meta, "last_run_at", str(now()))
        return run

    def _check_model(self, model: str) -> None:
        """Vectors of another embedding model are not comparable: start over."""
        stored = self.store.get_meta("model")
        if stored != model:
            if stored is not None:
                log.info("workspace index %s: embedding model changed, re-indexing", self.root)
                self.store.clear()
            self.store.set_meta("model", model)
            self.store.set_meta("root", str(self.root))

    async def _embed_files(
        self,
        entries: list[FileEntry],
        known: dict[str, FileRecord],
        run: IndexRun,
        progress: Progress | None,
        cancel: threading.Event | None,
        model: str,
    ) -> None:
        pending = await asyncio.to_thread(self._prepare, entries, known, run)
        todo = [(p, i) for p in pending for i in p.missing]
        total, done = len(todo), 0
        if progress:
            progress(0, total, f"{len(pending)} files to index")
        by_file_left = {id(p): len(p.missing) for p in pending}
        for p in pending:
            if not p.missing:
                await asyncio.to_thread(self._store_file, p, run)
        s = self.settings
        pacer = Pacer(
            self.engine.most_urgent_work,
            self.user_activity,
            s.workspace_embed_batch,
            s.workspace_embed_busy_batch,
            s.workspace_quiet_s,
        )
        start = 0
        while start < total:
            if cancel is not None and cancel.is_set():
                raise IndexCancelled("indexing cancelled")
            size = await pacer.next_size()
            part = todo[start : start + size]
            start += len(part)
            texts = [p.chunks[i].embed_text() for p, i in part]
            result = await self.engine.embed(texts, model, priority=Priority.BULK)
            run.texts_embedded += len(texts)
            finished = []
            for (p, i), vector in zip(part, result.vectors, strict=True):
                p.vectors[i] = np.asarray(vector, dtype=np.float32).tobytes()
                by_file_left[id(p)] -= 1
                if by_file_left[id(p)] == 0:
                    finished.append(p)
            for p in finished:
                await asyncio.to_thread(self._store_file, p, run)
            done += len(part)
            if progress:
                progress(done, total, f"{done}/{total} chunks embedded")

    def _prepare(
        self, entries: list[FileEntry], known: dict[str, FileRecord], run: IndexRun
    ) -> list[Pending]:
        """Read, hash and chunk the files whose stat changed (on a worker thread)."""
        pending = []
        for entry in entries:
            text = read_text(self.root, entry.path, self.settings.workspace_max_file_bytes)
            if text is None:
                run.files_skipped += 1
                if entry.path in known:
                    self.store.delete([entry.path])
                continue
            file_hash = digest(text)
            old = known.get(entry.path)
            if old is not None and old.hash == file_hash:
                self.store.touch(entry.path, entry.size, entry.mtime_ns)
                run.files_unchanged += 1
                continue
            try:
                chunks = chunk_file(entry.path, text)
            except Exception as e:  # a chunker bug must cost one file, never the whole root
                log.warning("workspace index: %s not chunked, skipped: %r", entry.path, e)
                run.files_skipped += 1
                continue
            hashes = [digest(c.embed_text()) for c in chunks]
            stored = self.store.vectors_of(entry.path) if old is not None else {}
            vectors = [stored.get(h) for h in hashes]
            missing = [i for i, v in enumerate(vectors) if v is None]
            pending.append(Pending(entry, file_hash, chunks, hashes, vectors, missing))
        return pending

    def _store_file(self, p: Pending, run: IndexRun) -> None:
        record = FileRecord(
            p.entry.path, p.digest, p.entry.size, p.entry.mtime_ns, len(p.chunks), now()
        )
        vectors = [v for v in p.vectors if v is not None]
        self.store.put_file(record, p.chunks, p.hashes, vectors)
        run.files_indexed += 1
        run.chunks_stored += len(p.chunks)

    async def update(
        self,
        changed: list[str],
        deleted: list[str],
        renamed: list[tuple[str, str]],
        model: str | None = None,
    ) -> IndexRun:
        """Apply what the editor saw: saved or created files, deleted ones, renames. Paths are
        absolute or relative to the root; those outside the root are ignored."""
        async with self.lock:
            started = time.perf_counter()
            run = IndexRun()
            model = model or self.model
            if await asyncio.to_thread(self.store.get_meta, "model") != model:
                # Another embedding model (or none yet): every vector must be made again.
                self.indexing = True
                try:
                    return await self._index(None, None, model)
                finally:
                    self.indexing = False
            gone = [r for p in deleted if (r := self.relative(p)) is not None]
            if gone:
                # A deleted folder: everything under it goes too.
                known = await asyncio.to_thread(self.store.files)
                paths = [k for k in known for g in gone if k == g or k.startswith(g + "/")]
                run.files_deleted = await asyncio.to_thread(self.store.delete, paths)
            touched: list[str] = []
            for old, new in renamed:
                old_rel, new_rel = self.relative(old), self.relative(new)
                if old_rel is not None and new_rel is not None:
                    if await asyncio.to_thread(self.store.rename, old_rel, new_rel):
                        run.files_renamed += 1
                    touched.append(new_rel)  # re-check: a rename may come with an edit
                elif old_rel is not None:
                    run.files_deleted += await asyncio.to_thread(self.store.delete, [old_rel])
                elif new_rel is not None:
                    touched.append(new_rel)
            touched += [r for p in changed if (r := self.relative(p)) is not None]
            entries = await asyncio.to_thread(self._entries, touched, run)
            known = await asyncio.to_thread(self.store.files)
            run.files_seen = len(entries)
            await self._embed_files(entries, known, run, None, None, model)
            run.seconds = round(time.perf_counter() - started, 3)
            return run

    def _entries(self, paths: list[str], run: IndexRun) -> list[FileEntry]:
        """Entries for the given files; a file now missing, too big or ignored leaves the index."""
        from sidecar.workspace.walker import Ignores

        ignores = Ignores(self.root)
        entries, drop = [], []
        for rel in dict.fromkeys(paths):
            parts = rel.split("/")
            for depth in range(len(parts)):
                ignores.load("/".join(parts[:depth]))
            entry = stat_entry(self.root, rel, self.settings.workspace_max_file_bytes)
            if (
                entry is None
                or ignores.ignored(rel, is_dir=False)
                or any(
                    ignores.ignored("/".join(parts[: d + 1]), is_dir=True)
                    for d in range(len(parts) - 1)
                )
            ):
                drop.append(rel)
            else:
                entries.append(entry)
        if drop:
            run.files_deleted += self.store.delete(drop)
        return entries

    def relative(self, path: str) -> str | None:
        """`path` (absolute, file:// URI, or relative to the root) relative to the root."""
        p = uri_to_path(path) or Path(path)
        if not p.is_absolute():
            p = self.root / p
        try:
            rel = p.resolve().relative_to(self.root)
        except ValueError:
            return None
        text = rel.as_posix()
        return None if text in ("", ".") else text

    # -- reading -------------------------------------------------------------------------------

    async def search(
        self, query: str, k: int = 8, mode: retrieval.Mode = "fused", model: str | None = None
    ) -> list[retrieval.Hit]:
        return await retrieval.search(self, query, k, mode, model or self.model)

    def status(self) -> dict[str, object]:
        files, chunks, size, last = self.store.counts()
        return {
            "root": str(self.root),
            "files": files,
            "chunks": chunks,
            "bytes": size,
            "index_bytes": self.store.path.stat().st_size if self.store.path.exists() else 0,
            "last_indexed_at": last,
            "indexing": self.indexing,
            "model": self.store.get_meta("model"),
        }

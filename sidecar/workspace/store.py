"""The index of one workspace on disk: one SQLite file holding the files (content hash, size,
mtime), their chunks with float32 vectors as BLOBs, and an FTS5 table over the chunks for the
lexical (BM25) score.

Why plain SQLite and not sqlite-vec or LanceDB: a workspace is thousands to tens of thousands of
chunks, and a brute-force cosine over a float32 matrix of that size (numpy, kept in memory
between queries) takes about a millisecond per 10k chunks - the same as sqlite-vec's own
brute-force `vec0` scan; SQLite and FTS5 ship with Python, while sqlite-vec needs a loadable
extension (`enable_load_extension`, missing from some Python builds, e.g. macOS' system Python)
and LanceDB brings pyarrow and its own file format for no gain at this size.

One connection, used from worker threads under a lock (`check_same_thread=False`): the asyncio
loop never blocks on disk.
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sidecar.workspace.chunker import FileChunk

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, hash TEXT NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, chunks INTEGER NOT NULL, indexed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL, symbol TEXT, text TEXT NOT NULL, hash TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(path, symbol, body);
"""
CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
WORD = re.compile(r"[A-Za-z0-9]+")


def lexical_body(text: str) -> str:
    """Text for FTS5: the chunk with camelCase identifiers also split into words (FTS5's
    unicode61 tokenizer already splits snake_case at the underscore)."""
    return text + "\n" + CAMEL.sub(" ", text)


@dataclass(frozen=True)
class FileRecord:
    path: str
    hash: str
    size: int
    mtime_ns: int
    chunks: int
    indexed_at: float


@dataclass(frozen=True)
class StoredChunk:
    id: int
    path: str
    start_line: int
    end_line: int
    symbol: str | None
    text: str


class IndexStore:
    def __init__(self, path: Path) -> None:
        # The index holds the workspace's code: readable by its user only (folders 0700, the
        # database 0600, which SQLite's -wal and -shm files copy).
        for folder in (path.parent.parent, path.parent):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if stat.S_IMODE(folder.stat().st_mode) != 0o700:
                os.chmod(folder, 0o700)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        for file in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
            if file.exists() and stat.S_IMODE(file.stat().st_mode) != 0o600:
                os.chmod(file, 0o600)  # made by an earlier version, 0644
        self.path = path
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.executescript(SCHEMA)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.version = 0  # moves on every write: the in-memory matrix is rebuilt after one
        self._matrix: tuple[int, np.ndarray, list[int]] | None = None

    def close(self) -> None:
        with self.lock:
            self.db.close()

    # -- meta ----------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self.lock:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.lock, self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- files ---------------------------------------------------------------------------------

    def files(self) -> dict[str, FileRecord]:
        with self.lock:
            rows = self.db.execute("SELECT * FROM files").fetchall()
        return {r[0]: FileRecord(*r) for r in rows}

    def vectors_of(self, path: str) -> dict[str, bytes]:
        """The stored vectors of a file's chunks, by chunk hash (reused when a chunk is unchanged)."""
        with self.lock:
            rows = self.db.execute("SELECT hash, vector FROM chunks WHERE path = ?", (path,))
            return dict(rows.fetchall())

    def put_file(
        self,
        record: FileRecord,
        chunks: list[FileChunk],
        hashes: list[str],
        vectors: list[bytes],
    ) -> None:
        """Replace a file's chunks (in one transaction: a reader never sees half a file)."""
        with self.lock, self.db:
            self._delete(record.path)
            for chunk, digest, vector in zip(chunks, hashes, vectors, strict=True):
                cur = self.db.execute(
                    "INSERT INTO chunks (path, start_line, end_line, symbol, text, hash, vector) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        chunk.path,
                        chunk.start_line,
                        chunk.end_line,
                        chunk.symbol,
                        chunk.text,
                        digest,
                        vector,
                    ),
                )
                self.db.execute(
                    "INSERT INTO chunks_fts (rowid, path, symbol, body) VALUES (?, ?, ?, ?)",
                    (
                        cur.lastrowid,
                        CAMEL.sub(" ", chunk.path),
                        chunk.symbol or "",
                        lexical_body(chunk.text),
                    ),
                )
            self.db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.path,
                    record.hash,
                    record.size,
                    record.mtime_ns,
                    record.chunks,
                    record.indexed_at,
                ),
            )
            self.version += 1

    def touch(self, path: str, size: int, mtime_ns: int) -> None:
        """The file's stat changed, its content did not."""
        with self.lock, self.db:
            self.db.execute(
                "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path)
            )

    def delete(self, paths: Iterable[str]) -> int:
        n = 0
        with self.lock, self.db:
            for path in paths:
                n += self._delete(path)
            self.version += 1
        return n

    def _delete(self, path: str) -> int:
        ids = [r[0] for r in self.db.execute("SELECT id FROM chunks WHERE path = ?", (path,))]
        self.db.executemany("DELETE FROM chunks_fts WHERE rowid = ?", [(i,) for i in ids])
        self.db.execute("DELETE FROM chunks WHERE path = ?", (path,))
        return self.db.execute("DELETE FROM files WHERE path = ?", (path,)).rowcount

    def rename(self, old: str, new: str) -> bool:
        """Move a file's record and chunks to a new path without re-embedding; False when the
        old path is not indexed."""
        with self.lock, self.db:
            if self.db.execute("SELECT 1 FROM files WHERE path = ?", (old,)).fetchone() is None:
                return False
            self._delete(new)
            self.db.execute("UPDATE files SET path = ? WHERE path = ?", (new, old))
            self.db.execute("UPDATE chunks SET path = ? WHERE path = ?", (new, old))
            ids = [r[0] for r in self.db.execute("SELECT id FROM chunks WHERE path = ?", (new,))]
            self.db.executemany(
                "UPDATE chunks_fts SET path = ? WHERE rowid = ?",
                [(CAMEL.sub(" ", new), i) for i in ids],
            )
            self.version += 1
        return True

    def clear(self) -> None:
        with self.lock, self.db:
            self.db.execute("DELETE FROM chunks_fts")
            self.db.execute("DELETE FROM chunks")
            self.db.execute("DELETE FROM files")
            self.version += 1

    # -- reading -------------------------------------------------------------------------------

    def counts(self) -> tuple[int, int, int, float | None]:
        """Files, chunks, bytes of indexed files, newest indexing time."""
        with self.lock:
            files, size, last = self.db.execute(
                "SELECT count(*), coalesce(sum(size), 0), max(indexed_at) FROM files"
            ).fetchone()
            chunks = self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return files, chunks, size, last

    def chunks(self, ids: list[int]) -> dict[int, StoredChunk]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self.lock:
            rows = self.db.execute(
                "SELECT id, path, start_line, end_line, symbol, text FROM chunks "
                f"WHERE id IN ({marks})",
                ids,
            ).fetchall()
        return {r[0]: StoredChunk(*r) for r in rows}

    def matrix(self) -> tuple[np.ndarray, list[int]]:
        """Every chunk's vector as rows of one float32 matrix, and the chunk ids in row order;
        kept until the next write."""
        cached = self._matrix
        if cached is not None and cached[0] == self.version:
            return cached[1], cached[2]
        with self.lock:
            version = self.version
            rows = self.db.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
        ids = [r[0] for r in rows]
        if rows:
            mat = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
        else:
            mat = np.zeros((0, 0), dtype=np.float32)
        self._matrix = (version, mat, ids)
        return mat, ids

    def lexical(self, query: str, limit: int) -> list[tuple[int, float]]:
        """FileChunk ids by BM25 for the words of `query` (any of them), best first, with a score
        where higher is better."""
        words = sorted({w.lower() for w in WORD.findall(CAMEL.sub(" ", query)) if len(w) > 1})
        words = [w for w in words if w not in STOPWORDS]
        if not words:
            return []
        match = " OR ".join(f'"{w}"' for w in words)
        with self.lock:
            rows = self.db.execute(
                "SELECT rowid, bm25(chunks_fts, 2.0, 4.0, 1.0) FROM chunks_fts "
                "WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts, 2.0, 4.0, 1.0) LIMIT ?",
                (match, limit),
            ).fetchall()
        return [(r[0], -r[1]) for r in rows]  # bm25(): lower is better


def now() -> float:
    return time.time()


STOPWORDS = frozenset(  # noqa: SIM905  (a word list reads better as one string)
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "so",
        "that",
        "the",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
        "we",
        "our",
        "there",
        "workspace",
        "file",
        "files",
        "code",
        "get",
        "set",
    ]
)

"""The files of a workspace worth indexing: `.gitignore` honoured (the root's and nested ones,
with git's own matching rules through `pathspec`), `.git` and common dependency/build folders
skipped, binary files (a NUL byte in the first 8 KiB, or not UTF-8) and files over a size limit
skipped. Only regular files inside the root: a symlink whose target is outside it (`link ->
/etc/passwd`) is not indexed, and a file is read with the size limit applied to the read itself
(a file that grew after it was listed is skipped, not read whole)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec

SNIFF_BYTES = 8192
ALWAYS_SKIPPED = {
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "__pycache__",
    ".venv",
    "venv",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".tox",
    ".cache",
    "dist",
    "build",
}


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative, "/" separators
    size: int
    mtime_ns: int


class Ignores:
    """The `.gitignore` files found on the way down, each matching paths below its own folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.specs: dict[str, pathspec.PathSpec] = {}

    def load(self, rel_dir: str) -> None:
        file = self.root / rel_dir / ".gitignore"
        if file.is_file():
            try:
                lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                return
            self.specs[rel_dir] = pathspec.GitIgnoreSpec.from_lines(lines)

    def ignored(self, rel_path: str, is_dir: bool) -> bool:
        for base, spec in self.specs.items():
            if base and not rel_path.startswith(base + "/"):
                continue
            sub = rel_path[len(base) + 1 :] if base else rel_path
            if spec.match_file(sub + "/" if is_dir else sub):
                return True
        return False


def walk(root: Path, max_file_bytes: int, max_files: int) -> Iterator[FileEntry]:
    """Indexable files under `root`, in a stable order."""
    ignores = Ignores(root)
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        ignores.load(rel_dir)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in ALWAYS_SKIPPED and not ignores.ignored(join(rel_dir, d), is_dir=True)
        )
        for name in sorted(filenames):
            rel = join(rel_dir, name)
            if ignores.ignored(rel, is_dir=False):
                continue
            entry = stat_entry(root, rel, max_file_bytes)
            if entry is None:
                continue
            yield entry
            count += 1
            if count >= max_files:
                return


def join(rel_dir: str, name: str) -> str:
    return f"{rel_dir}/{name}" if rel_dir else name


def stat_entry(root: Path, rel: str, max_file_bytes: int) -> FileEntry | None:
    """The file's entry, or None when it is not a regular file inside the root (a symlink may
    point inside it) or is empty or too big to index."""
    path = root / rel
    try:
        st = path.stat()
        if path.is_symlink() and not inside(root, path.resolve(strict=True)):
            return None
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop on older Pythons
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0 or st.st_size > max_file_bytes:
        return None
    return FileEntry(rel, st.st_size, st.st_mtime_ns)


def inside(root: Path, resolved: Path) -> bool:
    return resolved == root or root in resolved.parents


def read_text(root: Path, rel: str, max_bytes: int) -> str | None:
    """The file's text, or None for a binary (NUL byte early on, or not UTF-8), a file that is
    no longer a regular file inside the root, or one now over `max_bytes` (only that much plus
    one byte is ever read)."""
    path = root / rel
    try:
        if not inside(root, path.resolve(strict=True)):
            return None
        # O_NONBLOCK: a FIFO swapped in since the walk must not block the open
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, RuntimeError):
        return None
    with os.fdopen(fd, "rb") as f:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            data = f.read(max_bytes + 1)
        except OSError:
            return None
    if len(data) > max_bytes or b"\0" in data[:SNIFF_BYTES]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None

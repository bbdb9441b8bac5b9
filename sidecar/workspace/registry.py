"""The open workspace indexes, one per root, each stored under `workspace_index_dir` in a folder
named for the root (its last component and a hash of its full path, so two checkouts named alike
do not share one). At most `workspace_max_open_indexes` stay open (least recently used idle ones
are closed). A root must be a folder, and not a filesystem root or the home folder itself
(indexing those reads every file of the machine or of the user)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.errors import InvalidRequest, NotFound
from sidecar.workspace.index import WorkspaceIndex
from sidecar.workspace.store import IndexStore


def index_path(index_dir: Path, root: Path) -> Path:
    key = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in root.name) or "root"
    return index_dir / f"{name}-{key}" / "index.sqlite"


def checked_root(root: str | Path) -> Path:
    """`root` as a resolved folder to index, or a clear error."""
    text = str(root)
    if "\0" in text:
        raise InvalidRequest("root must not contain a NUL byte")
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise InvalidRequest(f"root must be an absolute path: {text!r}")
    try:
        path = path.resolve()
        is_dir = path.is_dir()
    except (OSError, RuntimeError) as e:
        raise InvalidRequest(f"root cannot be resolved: {text!r} ({type(e).__name__})") from None
    if not is_dir:
        raise NotFound(f"workspace root is not a folder: {text!r}")
    if path.parent == path or path == Path.home().resolve():
        raise InvalidRequest(
            f"root {text!r} is a filesystem root or your home folder: index a project folder"
        )
    return path


class Workspaces:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        user_activity: Callable[[], float] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.indexes: dict[Path, WorkspaceIndex] = {}
        self.default_root: Path | None = None  # the editor's first workspace folder
        self.last_root: Path | None = None  # the root last indexed or searched
        # time.monotonic() of the user's last request; indexing yields to it (pacing.py)
        self.user_activity = user_activity

    def get(self, root: str | Path) -> WorkspaceIndex:
        """The index of `root` (opened from disk, or created empty)."""
        path = checked_root(root)
        index = self.indexes.pop(path, None)
        if index is None:
            self.close_idle(self.settings.workspace_max_open_indexes - 1)
            store = IndexStore(index_path(self.settings.workspace_index_dir, path))
            index = WorkspaceIndex(path, store, self.engine, self.settings, self.user_activity)
        self.indexes[path] = index  # last: the most recently used
        self.last_root = path
        return index

    def close_idle(self, keep: int) -> None:
        """Close the least recently used indexes that are not busy until at most `keep` are
        open (busy ones stay open, even past it)."""
        for path, index in list(self.indexes.items()):
            if len(self.indexes) <= keep:
                return
            if not index.indexing and not index.lock.locked():
                del self.indexes[path]
                index.store.close()

    def current(self, root: str | Path | None = None) -> WorkspaceIndex | None:
        """The index for `root`, else the one last used, else the editor's workspace folder's
        (opened from disk if it was indexed before); None when there is none."""
        if root is not None:
            return self.get(root)
        for candidate in (self.last_root, self.default_root):
            if candidate is not None and candidate.is_dir():
                if candidate in self.indexes:
                    return self.indexes[candidate]
                if index_path(self.settings.workspace_index_dir, candidate.resolve()).exists():
                    return self.get(candidate)
        return None

    def containing(self, path: Path) -> WorkspaceIndex | None:
        """The open index whose root holds `path` (the deepest one)."""
        best = None
        for root, index in self.indexes.items():
            inside = path == root or root in path.parents
            if inside and (best is None or len(root.parts) > len(best.root.parts)):
                best = index
        return best

    def close(self) -> None:
        for index in self.indexes.values():
            index.store.close()
        self.indexes.clear()

"""The open workspace indexes, one per root, each stored under `workspace_index_dir` in a folder
named for the root (its last component and a hash of its full path, so two checkouts named alike
do not share one)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.errors import InvalidRequest, NotFound
from sidecar.workspace.index import WorkspaceIndex
from sidecar.workspace.store import IndexStore


def index_path(index_dir: Path, root: Path) -> Path:
    key = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in root.name) or "root"
    return index_dir / f"{name}-{key}" / "index.sqlite"


class Workspaces:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.indexes: dict[Path, WorkspaceIndex] = {}
        self.default_root: Path | None = None  # the editor's first workspace folder
        self.last_root: Path | None = None  # the root last indexed or searched
        self.background: set[asyncio.Task[Any]] = set()
        # time.monotonic() of the user's last request; indexing yields to it (pacing.py)
        self.user_activity: Callable[[], float] | None = (
            None  # re-indexing on save, kept referenced
        )

    def get(self, root: str | Path) -> WorkspaceIndex:
        """The index of `root` (opened from disk, or created empty)."""
        path = Path(root).expanduser()
        if not path.is_absolute():
            raise InvalidRequest(f"root must be an absolute path: {root}")
        path = path.resolve()
        if not path.is_dir():
            raise NotFound(f"workspace root is not a folder: {root}")
        index = self.indexes.get(path)
        if index is None:
            store = IndexStore(index_path(self.settings.workspace_index_dir, path))
            index = WorkspaceIndex(path, store, self.engine, self.settings)
            index.user_activity = self.user_activity
            self.indexes[path] = index
        self.last_root = path
        return index

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

"""Local models: the sidecar's models directory plus models already in the Hugging Face cache."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sidecar.errors import InvalidModelIdError, ModelNotFoundError
from sidecar.models.kinds import (
    ModelKind,
    detect_kind,
    fim_family,
    quantization_of,
    read_json,
    tokenizer_vocab,
)

WEIGHT_SUFFIXES = (".safetensors", ".npz")
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclass(frozen=True)
class ModelInfo:
    id: str
    path: Path
    kind: ModelKind
    size_bytes: int
    quantization: str | None
    fim: str | None  # FIM token family, or None
    source: str  # "store" or "hf-cache"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def validate_model_id(model_id: str) -> str:
    if not isinstance(model_id, str) or not model_id:
        raise InvalidModelIdError("model id must be a non-empty string")
    if ".." in model_id.split("/") or not MODEL_ID.match(model_id):
        raise InvalidModelIdError(
            f"invalid model id {model_id!r}: use 'name' or 'owner/name' "
            "(letters, digits, '.', '_', '-')"
        )
    return model_id


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):  # a dangling link counts as nothing
                total += (Path(root) / f).stat().st_size  # follows HF cache symlinks to blobs
    return total


def is_model_dir(path: Path) -> bool:
    if not path.is_dir() or not (path / "config.json").is_file():
        return False
    return any(p.suffix in WEIGHT_SUFFIXES for p in path.iterdir())


def describe(model_id: str, path: Path, source: str) -> ModelInfo:
    config = read_json(path / "config.json")
    files = {p.name for p in path.iterdir()}
    return ModelInfo(
        id=model_id,
        path=path,
        kind=detect_kind(config, model_id, files),
        size_bytes=dir_size(path),
        quantization=quantization_of(config),
        fim=fim_family(tokenizer_vocab(path)),
        source=source,
    )


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return hf_home / "hub"


class ModelStore:
    """Finds local models by id. Ids are directory names in the store (`name` or `owner/name`)
    or repo ids of snapshots in the Hugging Face cache."""

    def __init__(self, models_dir: Path, use_hf_cache: bool = True) -> None:
        self.models_dir = Path(models_dir).expanduser()
        self.use_hf_cache = use_hf_cache

    def _store_entries(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        if not self.models_dir.is_dir():
            return found
        for child in sorted(self.models_dir.iterdir()):
            if child.name.startswith(".") or not child.is_dir():
                continue
            if is_model_dir(child):
                found[child.name] = child
                continue
            for grandchild in sorted(child.iterdir()):  # owner/name layout from hub pulls
                if not grandchild.name.startswith(".") and is_model_dir(grandchild):
                    found[f"{child.name}/{grandchild.name}"] = grandchild
        return found

    def _hf_cache_entries(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        cache = hf_cache_dir()
        if not self.use_hf_cache or not cache.is_dir():
            return found
        for repo in sorted(cache.glob("models--*")):
            snapshots = repo / "snapshots"
            if not snapshots.is_dir():
                continue
            candidates = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
            for snap in candidates:
                if snap.is_dir() and is_model_dir(snap):
                    found[repo.name[len("models--") :].replace("--", "/")] = snap
                    break
        return found

    def entries(self) -> dict[str, tuple[Path, str]]:
        merged = {k: (v, "hf-cache") for k, v in self._hf_cache_entries().items()}
        merged.update({k: (v, "store") for k, v in self._store_entries().items()})
        return merged

    def list(self) -> list[ModelInfo]:
        return [describe(mid, path, src) for mid, (path, src) in sorted(self.entries().items())]

    def path_of(self, model_id: str) -> Path:
        validate_model_id(model_id)
        entries = self.entries()
        if model_id in entries:
            return entries[model_id][0]
        # Accept the last path component alone when it names exactly one model.
        short = [mid for mid in entries if mid.rsplit("/", 1)[-1] == model_id]
        if len(short) == 1:
            return entries[short[0]][0]
        known = ", ".join(sorted(entries)) or "none (run `mlx-sidecar models setup-defaults`)"
        raise ModelNotFoundError(f"model {model_id!r} not found; local models: {known}")

    def resolve_id(self, model_id: str) -> str:
        """The canonical id for `model_id` (which may be a short name)."""
        path = self.path_of(model_id)
        for mid, (p, _src) in self.entries().items():
            if p == path:
                return mid
        return model_id

    def info(self, model_id: str) -> ModelInfo:
        path = self.path_of(model_id)
        mid = self.resolve_id(model_id)
        return describe(mid, path, self.entries()[mid][1])

    def remove(self, model_id: str) -> Path:
        """Delete a model from the store directory; refuse anything outside it."""
        path = self.path_of(model_id).resolve()
        root = self.models_dir.resolve()
        if root not in path.parents:
            raise InvalidModelIdError(
                f"model {model_id!r} is not in the sidecar's store ({root}); not deleting it"
            )
        shutil.rmtree(path)
        parent = path.parent
        if parent != root and not any(parent.iterdir()):
            parent.rmdir()
        return path

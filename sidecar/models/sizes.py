"""How much memory models take: the budget, a model's size before it loads (from its weights on
disk), and its weights in chunks to evaluate one by one while it loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import mlx.core as mx
from mlx.utils import tree_flatten

from sidecar.models.store import ModelInfo, dir_size

LOAD_CHUNK_BYTES = 64 << 20


def parameters(model: Any) -> list[tuple[str, mx.array]]:
    """(name, array) for every parameter; tree_flatten's type also covers its dict mode."""
    return cast(list[tuple[str, mx.array]], tree_flatten(model.parameters()))


def weight_chunks(model: Any, chunk_bytes: int = LOAD_CHUNK_BYTES) -> list[list[mx.array]]:
    """The model's (lazy) parameters in groups of about `chunk_bytes` to evaluate one by one."""
    chunks: list[list[mx.array]] = [[]]
    size = 0
    for _, array in parameters(model):
        if size >= chunk_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(array)
        size += array.nbytes
    return [c for c in chunks if c]


def default_budget() -> int:
    """Half the machine's RAM (on Apple silicon, at most Metal's recommended working set)."""
    from sidecar.config import default_memory_budget

    budget = default_memory_budget()
    try:
        if mx.metal.is_available():
            budget = min(budget, int(mx.device_info()["max_recommended_working_set_size"]))
    except (AttributeError, KeyError, RuntimeError):
        pass
    return budget


def weights_size(path: Path) -> int:
    weights = [p for p in path.iterdir() if p.suffix in (".safetensors", ".npz")]
    return sum(p.stat().st_size for p in weights) if weights else dir_size(path)


def estimate_bytes(info: ModelInfo) -> int:
    """Memory a model will take once loaded: its weights' size on disk, doubled where the
    loader widens half-precision weights to float32 (CPU-only MLX)."""
    size = weights_size(info.path)
    if mx.default_device() == mx.cpu and info.quantization in ("bfloat16", "float16"):
        size *= 2
    return size

"""Load a local model directory into memory by kind. Called only on the engine's worker thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from sidecar.models.kinds import ModelKind


def _as_float32_on_cpu(model: nn.Module) -> None:
    """On CPU-only MLX, half-precision matmuls are single-threaded reference code: run float32."""
    if mx.default_device() != mx.cpu:
        return
    from mlx.utils import tree_map

    def cast(x: Any) -> Any:
        if isinstance(x, mx.array) and x.dtype in (mx.float16, mx.bfloat16):
            return x.astype(mx.float32)
        return x

    if not any(
        isinstance(m, nn.QuantizedLinear | nn.QuantizedEmbedding) for _, m in model.named_modules()
    ):
        model.update(tree_map(cast, model.parameters()))


def load_model(path: Path, kind: ModelKind) -> tuple[Any, Any]:
    """Return (model, tokenizer-or-processor), weights evaluated."""
    if kind == "text":
        from mlx_lm import load

        model, tokenizer = load(str(path))
    elif kind == "embedding":
        import mlx_embeddings

        model, tokenizer = mlx_embeddings.load(str(path))
    else:
        from mlx_vlm import load as load_vlm

        model, tokenizer = load_vlm(str(path))
    _as_float32_on_cpu(model)
    mx.eval(model.parameters())
    return model, tokenizer

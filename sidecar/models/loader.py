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


def load_tokenizer(path: Path, kind: ModelKind) -> Any | None:
    """A text model's tokenizer, built without MLX (so on any thread, off the worker); None
    for other kinds, whose loaders build theirs with the model."""
    if kind != "text":
        return None
    from mlx_lm.utils import load_config
    from mlx_lm.utils import load_tokenizer as load_text_tokenizer

    return load_text_tokenizer(path, eos_token_ids=load_config(path).get("eos_token_id"))


def load_model(
    path: Path, kind: ModelKind, lazy: bool = False, tokenizer: Any | None = None
) -> tuple[Any, Any]:
    """Return (model, tokenizer-or-processor), weights evaluated (or, with `lazy`, still to be
    evaluated by the caller: the pool does it in chunks between batch steps). A text model's
    `tokenizer` may come ready from `load_tokenizer`."""
    if kind == "text" and tokenizer is not None:
        from mlx_lm.utils import load_model as load_text_model

        model, _config = load_text_model(path, lazy=lazy)
    elif kind == "text":
        from mlx_lm import load

        model, tokenizer = load(str(path), lazy=lazy)[:2]  # (model, tokenizer[, config])
    elif kind == "embedding":
        import mlx_embeddings

        model, tokenizer = mlx_embeddings.load(str(path), lazy=lazy)
    else:
        from mlx_vlm import load as load_vlm

        model, tokenizer = load_vlm(str(path), lazy=lazy)
    _as_float32_on_cpu(model)
    if not lazy:
        mx.eval(model.parameters())
    return model, tokenizer

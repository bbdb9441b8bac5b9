"""Import a GGUF file (llama, qwen2, qwen3, gemma3; every common quant type) as an MLX model
directory that `mlx_lm.load` loads.

The file is read and each tensor dequantized by the `gguf` package (`gguf_file.py`); names and
hyperparameters are mapped per architecture (`gguf_arch.py`); the tokenizer comes from the
metadata (`gguf_tokenizer.py`). Weights become float32 on the CPU backend (its float32 matmuls
use OpenBLAS; quantized MLX kernels run ~3x slower there), or MLX affine 4/8-bit where Metal or
CUDA runs MLX (`dtype="quantized"`): 4-bit for tensors stored at 4 bits or fewer, else 8-bit.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx

from sidecar.models.atomic import staged_dir
from sidecar.models.gguf_arch import architecture_of, build_config, unpermute_rows
from sidecar.models.gguf_file import GGUFFile, GGUFImportError, read_gguf
from sidecar.models.gguf_tokenizer import build_tokenizer

__all__ = ["GGUFImportError", "import_gguf", "unpermute_rows", "DTYPES", "KEEP_QUANTIZED"]

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
KEEP_QUANTIZED = "quantized"
GROUP_SIZE = 32  # GGUF's block size for the legacy types; K-quants' sub-blocks are 16 or 32

ProgressFn = Callable[[str, int, int], None]


def default_dtype() -> str:
    """float32 where only the CPU runs MLX (its float32 matmuls use OpenBLAS), else quantized."""
    return KEEP_QUANTIZED if mx.metal.is_available() or _cuda_available() else "float32"


def _cuda_available() -> bool:
    try:
        return bool(mx.cuda.is_available())
    except AttributeError:
        return False


def _quantizable(name: str, shape: tuple[int, ...]) -> bool:
    return name.endswith(".weight") and len(shape) == 2 and shape[-1] % GROUP_SIZE == 0


def convert_weights(
    gguf: GGUFFile, config: dict[str, Any], dtype: str, progress: ProgressFn
) -> tuple[dict[str, mx.array], dict[str, Any] | None]:
    """Every tensor dequantized, renamed and fixed up for its architecture; then cast to `dtype`
    or re-quantized to MLX affine weights."""
    spec = architecture_of(gguf.architecture)
    out: dict[str, mx.array] = {}
    layer_bits: dict[str, int] = {}
    total = len(gguf.tensors)
    for i, tensor in enumerate(gguf.tensors):
        progress(f"converting {tensor.name} ({tensor.type_name})", i, total)
        name, part = spec.hf_name(tensor.name)
        values = spec.transform(part, tensor.dequantize(), config)
        array = mx.array(values)
        if dtype == KEEP_QUANTIZED and _quantizable(name, tensor.shape):
            bits = 4 if tensor.low_bit else 8
            w, scales, biases = mx.quantize(array, group_size=GROUP_SIZE, bits=bits)
            module = name[: -len(".weight")]
            out.update({name: w, f"{module}.scales": scales, f"{module}.biases": biases})
            layer_bits[module] = bits
            mx.eval(w, scales, biases)
        else:
            out[name] = array.astype(DTYPES.get(dtype, mx.float16))
            mx.eval(out[name])
    if not layer_bits:
        return out, None
    common = Counter(layer_bits.values()).most_common(1)[0][0]
    quantization: dict[str, Any] = {"group_size": GROUP_SIZE, "bits": common}
    for module, bits in layer_bits.items():
        if bits != common:
            quantization[module] = {"group_size": GROUP_SIZE, "bits": bits}
    return out, quantization


def default_name(path: Path, metadata: dict[str, Any]) -> str:
    stem = re.sub(r"\.(Q\d\w*|F16|F32|BF16)$", "", path.stem, flags=re.IGNORECASE)
    return stem or str(metadata.get("general.name", "model"))


def import_gguf(
    path: Path,
    models_dir: Path,
    name: str | None = None,
    dtype: str | None = None,
    progress: ProgressFn | None = None,
    overwrite: bool = False,
) -> Path:
    """Import `path` into `models_dir/<name>`; return the model directory.

    Everything is written to a staging directory beside the target and renamed into place at
    the end (`staged_dir`), so a failed import never leaves a half-written model in the store.
    """
    dtype = dtype or default_dtype()
    if dtype not in (*DTYPES, KEEP_QUANTIZED):
        raise GGUFImportError(
            f"unknown dtype {dtype!r} (choose {', '.join((*DTYPES, KEEP_QUANTIZED))})"
        )
    step = progress or (lambda _msg, _done, _total: None)
    path = Path(path)
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise GGUFImportError(f"invalid model name {name!r}: use letters, digits, '.', '_', '-'")
    step("reading GGUF", 0, 1)  # the total is known once the file is read
    gguf = read_gguf(path)
    total = len(gguf.tensors) + 1
    name = name or default_name(path, gguf.metadata)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise GGUFImportError(f"invalid model name {name!r}: use letters, digits, '.', '_', '-'")
    target = models_dir / name
    if target.exists() and not overwrite:
        raise GGUFImportError(f"model {name!r} already exists at {target}")

    config = build_config(gguf.metadata, {t.name for t in gguf.tensors})
    models_dir.mkdir(parents=True, exist_ok=True)
    with staged_dir(target, replace=True) as tmp:
        step("building tokenizer", 0, total)
        build_tokenizer(gguf.metadata, tmp)
        converted, quantization = convert_weights(gguf, config, dtype, step)
        if quantization:
            config["quantization"] = quantization
        config["torch_dtype"] = dtype if dtype in DTYPES else "float16"
        step("writing weights", total - 1, total)
        mx.save_safetensors(str(tmp / "model.safetensors"), converted, metadata={"format": "mlx"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        (tmp / "generation_config.json").write_text(
            json.dumps({k: config[k] for k in ("bos_token_id", "eos_token_id") if k in config})
        )
        (tmp / "sidecar_source.json").write_text(
            json.dumps({"imported_from": str(path), "format": "gguf", "dtype": dtype})
        )
    step("done", total, total)
    return target

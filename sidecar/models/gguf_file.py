"""Reading a GGUF file with the `gguf` package (llama.cpp's own reader and numpy dequantizers):
its metadata as plain Python values, and each tensor dequantized to float32.

`mx.load` reads only Q4_0 / Q4_1 / Q8_0 tensors; real files mix K-quants and Q5_0 (a Q4_K_M file
is Q5_0, Q8_0, Q4_K, Q6_K and F32), so every tensor goes through `gguf.quants.dequantize`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sidecar.errors import InvalidRequest

# Every type `gguf.quants.dequantize` handles that real model files use; others are refused by
# name before any work is done.
SUPPORTED_TYPES = (
    "F32",
    "F16",
    "BF16",
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
    "Q8_0",
    "Q2_K",
    "Q3_K",
    "Q4_K",
    "Q5_K",
    "Q6_K",
    "IQ4_NL",
    "IQ4_XS",
)
# Bits per weight of the source type, to choose 4- or 8-bit MLX weights when re-quantizing.
LOW_BIT_TYPES = {"Q2_K", "Q3_K", "Q4_0", "Q4_1", "Q4_K", "IQ4_NL", "IQ4_XS"}
# Arrays kept in the metadata (the tokenizer's); other arrays are dropped (they can be huge).
KEPT_ARRAYS = {
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
}


class GGUFImportError(InvalidRequest):
    """The file cannot be imported; the message says why."""


@dataclass
class GGUFTensor:
    name: str
    type_name: str  # GGML type, e.g. "Q4_K"
    shape: tuple[int, ...]  # numpy order (rows first)
    raw: Any  # the reader's memory-mapped bytes or values

    def dequantize(self) -> np.ndarray:
        from gguf.quants import dequantize

        try:
            values = dequantize(self.raw, _ggml_type(self.type_name))
        except (NotImplementedError, ValueError) as e:
            raise GGUFImportError(
                f"tensor {self.name!r} of type {self.type_name} cannot be dequantized ({e})"
            ) from e
        return np.asarray(values, dtype=np.float32).reshape(self.shape)

    @property
    def low_bit(self) -> bool:
        return self.type_name in LOW_BIT_TYPES


def _ggml_type(name: str) -> Any:
    from gguf import GGMLQuantizationType

    return GGMLQuantizationType[name]


@dataclass
class GGUFFile:
    path: Path
    metadata: dict[str, Any]
    tensors: list[GGUFTensor]

    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str):
            raise GGUFImportError(
                f"{self.path}: GGUF metadata has no general.architecture (empty or corrupt file?)"
            )
        return arch

    def by_name(self) -> Iterator[tuple[str, GGUFTensor]]:
        for t in self.tensors:
            yield t.name, t


def read_gguf(path: Path) -> GGUFFile:
    """Metadata and tensor handles of `path` (tensor data stays memory-mapped until used)."""
    if not path.is_file():
        raise GGUFImportError(f"{path}: no such file")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise GGUFImportError(f"{path}: not a GGUF file (bad magic number)")
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
        metadata = {
            name: field.contents()
            for name, field in reader.fields.items()
            if not name.startswith("GGUF.") and (len(field.data) <= 1 or name in KEPT_ARRAYS)
        }
        tensors = [
            GGUFTensor(
                name=t.name,
                type_name=t.tensor_type.name,
                shape=tuple(int(d) for d in reversed(t.shape.tolist())),
                raw=t.data,
            )
            for t in reader.tensors
        ]
    except GGUFImportError:
        raise
    except Exception as e:  # the reader raises ValueError/IndexError/struct errors on bad files
        raise GGUFImportError(f"{path}: cannot read GGUF ({type(e).__name__}: {e})") from e
    unsupported = sorted({t.type_name for t in tensors} - set(SUPPORTED_TYPES))
    if unsupported:
        names = [t.name for t in tensors if t.type_name in unsupported][:3]
        raise GGUFImportError(
            f"{path}: tensor type {', '.join(unsupported)} is not supported (in {', '.join(names)}"
            f"; supported: {', '.join(SUPPORTED_TYPES)})"
        )
    return GGUFFile(path, metadata, tensors)

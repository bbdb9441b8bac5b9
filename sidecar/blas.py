"""Load a fast BLAS for MLX's CPU backend before `mlx.core` is imported.

The Linux `mlx-cpu` wheel bundles a reference BLAS (1-2 GFLOP/s float32 matmul). MLX calls only
`cblas_sgemm/dgemm/cgemm`, so loading OpenBLAS globally first makes MLX resolve those symbols to
it (107-130 GFLOP/s on 2 AVX2 cores). On macOS (Metal / Accelerate) nothing is loaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
)

loaded_path: str | None = None


def find_openblas() -> str | None:
    override = os.environ.get("MLX_SIDECAR_OPENBLAS")
    if override:
        return override if override != "off" else None
    for path in CANDIDATES:
        if os.path.exists(path):
            return path
    return ctypes.util.find_library("openblas")


def load_openblas() -> str | None:
    """Load OpenBLAS with RTLD_GLOBAL once; return its path, or None when absent or not needed."""
    global loaded_path
    if loaded_path or sys.platform == "darwin":
        return loaded_path
    if "mlx.core" in sys.modules:
        return None  # too late: MLX already bound its BLAS symbols
    path = find_openblas()
    if path is None:
        return None
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return None
    loaded_path = path
    return path

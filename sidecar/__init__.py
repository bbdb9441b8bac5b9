"""MLX editor sidecar: one batched MLX engine behind JSON-RPC (LSP) and an OpenAI-compatible port."""

from sidecar.blas import load_openblas

# Must run before anything imports mlx.core (see sidecar/blas.py).
load_openblas()

__version__ = "0.1.0"

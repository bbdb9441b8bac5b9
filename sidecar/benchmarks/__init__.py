"""Benchmarks and load tests, kept out of the product packages; `mlx-sidecar bench` runs them.

- engine.py: decode tokens/s at each concurrency next to raw mlx_lm, embeddings next to raw
  mlx_embeddings (`--suite engine`);
- http.py: streamed chat over the OpenAI port next to `mlx_lm.server` (`--suite http`);
- typing_rpc.py: the recorded typing session (typing-session.json) replayed over JSON-RPC
  (`--suite typing`).
"""

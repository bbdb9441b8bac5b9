"""Retrieval over a workspace index: embeddings (cosine; the embedding model's vectors are
L2-normalized, so a dot product), lexical (FTS5's BM25), or both fused by reciprocal rank
(Cormack et al. 2009: each list adds 1/(RRF_K + rank); robust to the two scores' different
scales, no weights to tune). Measured on the fixture repo (tests/test_workspace.py, README).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from sidecar.engine.requests import Priority

if TYPE_CHECKING:
    from sidecar.workspace.index import WorkspaceIndex

Mode = Literal["fused", "embedding", "lexical"]
RRF_K = 60
CANDIDATES = 50  # taken from each list before fusing


@dataclass(frozen=True)
class Hit:
    path: str
    start_line: int
    end_line: int
    symbol: str | None
    score: float
    text: str


async def search(index: WorkspaceIndex, query: str, k: int, mode: Mode, model: str) -> list[Hit]:
    store = index.store
    # The query must be embedded by the model that made the stored vectors.
    stored: str | None = await asyncio.to_thread(store.get_meta, "model")
    model = stored or model
    dense: list[tuple[int, float]] = []
    lexical: list[tuple[int, float]] = []
    if mode in ("fused", "embedding"):
        matrix, ids = await asyncio.to_thread(store.matrix)
        if ids:
            # One text: a query (CHAT class), ahead of any indexing in flight.
            result = await index.engine.embed([query], model, priority=Priority.CHAT)
            q = np.asarray(result.vectors[0], dtype=np.float32)
            scores = matrix @ q
            top = np.argsort(-scores)[:CANDIDATES]
            dense = [(ids[i], float(scores[i])) for i in top]
    if mode in ("fused", "lexical"):
        lexical = await asyncio.to_thread(store.lexical, query, CANDIDATES)
    if mode == "embedding":
        ranked = dense
    elif mode == "lexical":
        ranked = lexical
    else:
        ranked = fuse([dense, lexical])
    ranked = ranked[:k]
    chunks = await asyncio.to_thread(store.chunks, [i for i, _ in ranked])
    return [
        Hit(c.path, c.start_line, c.end_line, c.symbol, round(score, 6), c.text)
        for i, score in ranked
        if (c := chunks.get(i)) is not None
    ]


def fuse(lists: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of ranked (id, score) lists."""
    scores: dict[int, float] = {}
    for ranked in lists:
        for rank, (chunk_id, _) in enumerate(ranked):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(scores.items(), key=lambda kv: -kv[1])

"""`mlx-sidecar bench`: the benchmark suite, printed as tables with ratios measured in one run."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from sidecar import blas
from sidecar.config import Settings
from sidecar.engine.engine import Engine


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark the engine against raw mlx_lm / mlx_embeddings")
    p.add_argument("--model", help="text model (default: the chat model)")
    p.add_argument("--embedding-model", help="embedding model (default: the embedding model)")
    p.add_argument("--concurrency", default="1,4,8,16", help="comma-separated stream counts")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--skip-text", action="store_true")
    p.add_argument("--skip-embeddings", action="store_true")
    p.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    p.set_defaults(run=run)


async def _bench(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from sidecar import bench

    out: dict[str, Any] = {}
    async with Engine(settings) as engine:
        model = args.model or settings.chat_model
        emb = args.embedding_model or settings.embedding_model
        print(f"device: {engine.status()['device']}; OpenBLAS: {blas.loaded_path or 'no'}")
        if not args.skip_text:
            levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
            rows = await bench.text_benchmark(engine, model, levels, args.max_tokens)
            out["text"] = rows
            print(bench.format_text_table(rows, args.max_tokens), flush=True)
        if not args.skip_embeddings:
            e = await bench.embedding_benchmark(engine, emb)
            out["embeddings"] = e
            print(bench.format_embedding_table(e), flush=True)
    return out


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        out = asyncio.run(_bench(args, settings))
    except Exception as e:  # a benchmark that cannot run says why, without a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, indent=2))
    return 0

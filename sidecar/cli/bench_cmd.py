"""`mlx-sidecar bench`: the benchmark suites (`sidecar/benchmarks/`), printed as tables with
ratios measured in one run. This module only parses the command line and picks the suites.

- engine: aggregate decode tokens/s at each concurrency next to raw mlx_lm (BatchGenerator and
  sequential stream_generate), embeddings engine vs raw mlx_embeddings;
- http: streamed chat over the OpenAI port next to `mlx_lm.server` on the same model;
- typing: a recorded typing session replayed through the JSON-RPC server (didChange,
  $/cancelRequest, inlineCompletion), alone and while a chat streams over mlx/chat: pause
  latency, chat tokens/s and longest gap, as ratios;
- typing-index: the typing replay idle, then while `mlx/workspace/index` builds a workspace
  index from scratch (`--index-root`, default a copy of the sidecar's own source): pause latency
  with indexing vs idle;
- soak: mixed traffic over both edges with random disconnects and cancels; lost, unexpected
  errors, memory after idle;
- windows: RSS sum of the sidecar processes for N editor windows, one `stdio` each vs one daemon
  and `stdio --attach` bridges;
- structured: json_schema constrained vs free decoding tokens/s at 1 and 8 streams.
- memory: RSS, MLX and memory-governor figures before load, loaded, busy, at rest, unloaded.
- step-shape: decode rows and a prefill chunk in two passes, in one padded pass, and the bound
  of a varlen pass (issue 21's "one forward pass for both", measured).
- fim: HumanEval single-line infilling (exact match, empty answers, latency) through the editor's
  `textDocument/inlineCompletion` and `/v1/completions` next to mlx_lm called directly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sidecar.completion.options import CompletionOptions
from sidecar.config import Settings

SUITES = (
    "engine",
    "http",
    "typing",
    "typing-index",
    "soak",
    "speculative",
    "windows",
    "structured",
    "memory",
    "fim",
    "step-shape",
)
# The recorded session ships inside the package, so an installed wheel finds it too.
DEFAULT_TYPING_SESSION = Path(__file__).resolve().parents[1] / "benchmarks" / "typing-session.json"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark suites: engine, http (vs mlx_lm.server), typing")
    p.add_argument(
        "--suite",
        default="engine",
        help="comma-separated: " + ", ".join(SUITES) + ", or all",
    )
    p.add_argument("--model", help="text model (default: the chat model)")
    p.add_argument("--embedding-model", help="embedding model (default: the embedding model)")
    p.add_argument("--concurrency", default="1,4,8,16", help="comma-separated stream counts")
    p.add_argument("--http-concurrency", default="1,8", help="stream counts for --suite http")
    p.add_argument(
        "--structured-concurrency", default="1,8", help="stream counts for --suite structured"
    )
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2, help="runs per level for --suite http")
    p.add_argument(
        "--stagger",
        type=float,
        default=0.5,
        help="--suite http: also run the largest level with one stream arriving every S s (0: off)",
    )
    p.add_argument("--typing-session", type=Path, default=DEFAULT_TYPING_SESSION)
    p.add_argument(
        "--typing-max-time-ms",
        type=int,
        help="--suite typing: the completion time budget (default: out of the way, so latency "
        "is not hidden by showing less; 1000 is the product's default)",
    )
    p.add_argument(
        "--typing-quick", action="store_true", help="--suite typing: no long-file and cold runs"
    )
    p.add_argument("--windows", type=int, default=3, help="--suite windows: editor windows")
    p.add_argument(
        "--index-root",
        type=Path,
        help="--suite typing-index: the workspace to index (default: the sidecar's own source)",
    )
    p.add_argument("--soak-requests", type=int, default=1000, help="--suite soak: requests")
    p.add_argument("--soak-concurrency", type=int, default=8, help="--suite soak: clients")
    p.add_argument("--limit", type=int, help="--suite fim: this many tasks, spread evenly")
    p.add_argument(
        "--fim-variants",
        help="--suite fim: JSON {name: completion options} for extra editor runs, e.g. "
        '\'{"1s": {"maxTimeMs": 1000}}\'',
    )
    p.add_argument(
        "--fim-paths", default="direct,http,editor", help="--suite fim: which paths to run"
    )
    p.add_argument("--skip-text", action="store_true")
    p.add_argument("--skip-embeddings", action="store_true")
    p.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    p.set_defaults(run=run)


def parse_suites(value: str) -> list[str]:
    names = [s.strip() for s in value.split(",") if s.strip()]
    if names == ["all"]:
        return list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown or not names:
        given = ", ".join(unknown) or repr(value)
        raise ValueError(f"unknown suite {given}; choose from {', '.join(SUITES)} or all")
    return names


def levels(value: str) -> list[int]:
    out = [int(x) for x in value.split(",") if x.strip()]
    if not out or min(out) < 1:
        raise ValueError(f"concurrency must be positive integers, got {value!r}")
    return out


async def engine_suite(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from sidecar.benchmarks import engine

    return await engine.suite(
        settings,
        args.model or settings.chat_model,
        args.embedding_model or settings.embedding_model,
        levels(args.concurrency),
        args.max_tokens,
        text=not args.skip_text,
        embeddings=not args.skip_embeddings,
    )


async def http_suite(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from sidecar.benchmarks import http

    results = await http.compare(
        settings.models_dir,
        args.model or settings.chat_model,
        levels(args.http_concurrency),
        args.max_tokens,
        args.repeats,
        args.stagger,
    )
    print(http.format_table(results), flush=True)
    return results


async def typing_suite(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from sidecar.benchmarks import typing_rpc

    if not args.typing_session.is_file():
        raise FileNotFoundError(f"typing session not found: {args.typing_session}")
    env = dict(os.environ)
    env.update(
        MLX_SIDECAR_MODELS_DIR=str(settings.models_dir),
        MLX_SIDECAR_USE_HF_CACHE=str(settings.use_hf_cache).lower(),
    )
    budget = args.typing_max_time_ms
    if budget is None:
        budget = typing_rpc.BUDGET_OUT_OF_THE_WAY_MS
    try:  # the server drops completion options it cannot take: the table would say another
        CompletionOptions(max_time_ms=budget)
    except ValidationError as e:
        raise ValueError(f"--typing-max-time-ms {budget}: {e.errors()[0]['msg']}") from None
    model = args.model or settings.completion_model
    report = await typing_rpc.typing_benchmark(
        env, settings.models_dir, model, args.typing_session, budget, args.typing_quick
    )
    print(typing_rpc.format_table(report), flush=True)
    return report


async def typing_index_suite(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from sidecar.benchmarks import typing_index

    if args.index_root is not None and not args.index_root.is_dir():
        raise FileNotFoundError(f"--index-root is not a folder: {args.index_root}")
    report = await typing_index.typing_while_indexing(
        sidecar_env(settings),
        args.model or settings.completion_model,
        args.typing_session,
        args.index_root,
    )
    print(typing_index.format_table(report), flush=True)
    return report


def sidecar_env(settings: Settings) -> dict[str, str]:
    """The environment for a sidecar subprocess on the same models."""
    env = dict(os.environ)
    env.update(
        MLX_SIDECAR_MODELS_DIR=str(settings.models_dir),
        MLX_SIDECAR_USE_HF_CACHE=str(settings.use_hf_cache).lower(),
    )
    return env


async def soak_suite(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from sidecar.benchmarks import soak

    report, _ = await soak.soak(
        sidecar_env(settings), args.soak_requests, args.soak_concurrency, args.max_tokens
    )
    out = report.to_dict()
    print(soak.format_table(out), flush=True)
    return out


async def speculative_suite(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from sidecar.benchmarks import speculative

    return await speculative.suite(
        settings, args.model or settings.completion_model, args.max_tokens
    )


async def windows_suite(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from sidecar.benchmarks import windows

    out = await windows.suite(sidecar_env(settings), args.windows)
    print(windows.format_table(out), flush=True)
    return out


async def structured_suite(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from sidecar.benchmarks import structured

    return await structured.suite(
        settings,
        args.model or settings.chat_model,
        levels(args.structured_concurrency),
        args.max_tokens,
    )


async def memory_suite(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from sidecar.benchmarks import memory

    return await memory.suite(
        settings, args.model or settings.chat_model, max(levels(args.concurrency)), args.max_tokens
    )


async def fim_suite(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from sidecar.benchmarks import fim

    variants = json.loads(args.fim_variants) if args.fim_variants else None
    report = await fim.suite(
        sidecar_env(settings),
        settings.models_dir,
        args.model or settings.completion_model,
        args.limit,
        variants,
        tuple(p.strip() for p in args.fim_paths.split(",") if p.strip()),
    )
    print(fim.format_table(report), flush=True)
    return report


async def step_shape_suite(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from sidecar.benchmarks import step_shape

    return await step_shape.suite(settings, args.model or settings.chat_model)


async def _bench(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    suites = {
        "engine": engine_suite,
        "http": http_suite,
        "typing": typing_suite,
        "typing-index": typing_index_suite,
        "soak": soak_suite,
        "speculative": speculative_suite,
        "windows": windows_suite,
        "structured": structured_suite,
        "memory": memory_suite,
        "fim": fim_suite,
        "step-shape": step_shape_suite,
    }
    out: dict[str, Any] = {}
    for name in parse_suites(args.suite):
        out[name] = await suites[name](args, settings)
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

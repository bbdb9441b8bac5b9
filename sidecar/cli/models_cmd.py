"""`mlx-sidecar models ...`: list, info, import-gguf, rm, setup-defaults (and hub search/pull)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sidecar import blas
from sidecar.cli.progress import StepBar
from sidecar.config import Settings
from sidecar.errors import SidecarError
from sidecar.models.defaults import install_defaults
from sidecar.models.gguf import DTYPES, KEEP_QUANTIZED, import_gguf
from sidecar.models.store import ModelStore


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="manage local models")
    msub = p.add_subparsers(dest="models_command", required=True)

    ls = msub.add_parser("list", help="list local models")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(run=cmd_list)

    info = msub.add_parser("info", help="show one model")
    info.add_argument("model")
    info.set_defaults(run=cmd_info)

    imp = msub.add_parser("import-gguf", help="import a llama-family GGUF file as an MLX model")
    imp.add_argument("file", type=Path)
    imp.add_argument("--name", help="model id (default: from the file name)")
    imp.add_argument(
        "--dtype",
        choices=[*DTYPES, KEEP_QUANTIZED],
        help="weights: float32/float16/bfloat16, or keep Q4_0/Q4_1/Q8_0 quantized "
        "(default: float32 on CPU-only machines, quantized with Metal/CUDA)",
    )
    imp.add_argument("--force", action="store_true", help="replace an existing model")
    imp.set_defaults(run=cmd_import)

    rm = msub.add_parser("rm", help="delete a model from the store")
    rm.add_argument("model")
    rm.set_defaults(run=cmd_rm)

    setup = msub.add_parser("setup-defaults", help="install the default chat and embedding models")
    setup.set_defaults(run=cmd_setup)

    try:
        from sidecar.cli import hub_cmd
    except ImportError:
        return
    hub_cmd.add_search_parser(msub)
    hub_cmd.add_pull_parser(msub)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def store_of(settings: Settings) -> ModelStore:
    return ModelStore(settings.models_dir, settings.use_hf_cache)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    models = store_of(settings).list()
    if args.json:
        print(json.dumps([m.to_dict() for m in models], indent=2))
        return 0
    if not models:
        print(f"no models in {settings.models_dir}; run: mlx-sidecar models setup-defaults")
        return 0
    rows = [("ID", "KIND", "SIZE", "QUANTIZATION", "FIM", "SOURCE")]
    rows += [
        (m.id, m.kind, human(m.size_bytes), m.quantization or "-", m.fim or "-", m.source)
        for m in models
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_info(args: argparse.Namespace, settings: Settings) -> int:
    try:
        info = store_of(settings).info(args.model)
    except SidecarError as e:
        return fail(str(e))
    data = info.to_dict()
    data["size"] = human(info.size_bytes)
    import mlx.core as mx

    data["runtime"] = {
        "device": str(mx.default_device()),
        "openblas": blas.loaded_path or "not loaded (float32 matmuls use MLX's reference BLAS)",
    }
    print(json.dumps(data, indent=2))
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    with StepBar("import") as bar:
        try:
            path = import_gguf(
                args.file,
                settings.models_dir,
                name=args.name,
                dtype=args.dtype,
                progress=bar.update,
                overwrite=args.force,
            )
        except SidecarError as e:
            bar.close()
            return fail(str(e))
    print(f"imported {path.name} -> {path}")
    return 0


def cmd_rm(args: argparse.Namespace, settings: Settings) -> int:
    try:
        path = store_of(settings).remove(args.model)
    except SidecarError as e:
        return fail(str(e))
    print(f"deleted {path}")
    return 0


def cmd_setup(args: argparse.Namespace, settings: Settings) -> int:
    with StepBar("setup") as bar:
        try:
            paths = install_defaults(settings.models_dir, progress=bar.update)
        except SidecarError as e:
            bar.close()
            return fail(str(e))
    for p in paths:
        print(f"ready: {p.name} ({p})")
    return 0

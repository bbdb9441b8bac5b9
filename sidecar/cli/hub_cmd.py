"""`mlx-sidecar models search Q` and `models pull REPO` (progress bar on stderr)."""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from sidecar.config import Settings
from sidecar.errors import SidecarError
from sidecar.models import hub
from sidecar.models.store import ModelStore


def add_search_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search the Hugging Face hub for MLX models")
    p.add_argument("query", nargs="?", default="", help="words in the model name")
    p.add_argument("--author", default=hub.DEFAULT_AUTHOR, help="owner on the hub ('' for anyone)")
    p.add_argument("--limit", type=int, default=20, help="at most this many results (1-100)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_search)


def add_pull_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pull", help="download a model from the hub into the models directory")
    p.add_argument("repo", help="hub id, e.g. mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit")
    p.add_argument("--revision", help="branch, tag or commit (default: main)")
    p.add_argument(
        "--no-verify", action="store_true", help="skip the test load before listing the model"
    )
    p.set_defaults(run=cmd_pull)


def human(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    store = ModelStore(settings.models_dir, settings.use_hf_cache)
    try:
        results = hub.search(args.query, author=args.author or None, limit=args.limit, store=store)
    except SidecarError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return 0
    if not results:
        print(f"no models match {args.query!r}", file=sys.stderr)
        return 0
    rows = [("ID", "KIND", "SIZE", "QUANT", "FIM", "DOWNLOADS", "LOCAL")]
    rows += [
        (
            r.id + (" (gated)" if r.gated else ""),
            r.kind,
            human(r.size_bytes),
            r.quantization or "-",
            r.fim or "-",
            str(r.downloads if r.downloads is not None else "-"),
            "yes" if r.local else "",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


class PullBar:
    """A tqdm byte bar fed by hub.DownloadProgress callbacks."""

    def __init__(self, repo_id: str) -> None:
        self.repo_id = repo_id
        self.bar: tqdm | None = None

    def __call__(self, p: hub.DownloadProgress) -> None:
        if self.bar is None:
            self.bar = tqdm(
                total=p.bytes_total,
                initial=p.bytes_done,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=self.repo_id,
                file=sys.stderr,
                leave=False,
            )
        self.bar.set_postfix_str(f"{p.files_done}/{p.files_total} {p.file}", refresh=False)
        self.bar.update(p.bytes_done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_pull(args: argparse.Namespace, settings: Settings) -> int:
    store = ModelStore(settings.models_dir, settings.use_hf_cache)
    bar = PullBar(args.repo)
    stats = hub.DownloadStats()
    try:
        info = hub.download(
            args.repo,
            store,
            revision=args.revision,
            progress=bar,
            verify=not args.no_verify,
            stats=stats,
        )
    except KeyboardInterrupt:
        bar.close()
        print("interrupted; run the same pull again to resume", file=sys.stderr)
        return 130
    except SidecarError as e:
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    bar.close()
    resumed = f", {human(stats.resumed_bytes)} resumed" if stats.resumed_bytes else ""
    print(f"pulled {info.id} ({info.kind}, {human(info.size_bytes)}{resumed}) -> {info.path}")
    return 0

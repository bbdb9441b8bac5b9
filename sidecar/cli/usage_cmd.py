"""`mlx-sidecar usage`: requests, tokens, errors, latency and cost per model and upstream."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys

from sidecar.config import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("usage", help="requests, tokens and cost per model and upstream")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from sidecar.usage.store import UsageStore

    path = settings.usage_db
    if not path.exists():
        rows = []
    else:
        try:
            store = UsageStore(path, settings.prices, writer=False)
            try:
                rows = store.totals()
            finally:
                store.close()
        except (sqlite3.Error, OSError) as e:  # a corrupt or unreadable file: say which
            print(f"error: {path}: cannot read the usage ledger: {e}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps([r.model_dump() for r in rows], indent=2))
        return 0
    if not rows:
        print(f"no usage recorded yet ({path})", file=sys.stderr)
        return 0
    header = (
        "model",
        "upstream",
        "requests",
        "errors",
        "tokens in",
        "tokens out",
        "latency",
        "cost",
    )
    table = [header] + [
        (
            r.model,
            r.upstream or "local",
            str(r.requests),
            str(r.errors),
            str(r.prompt_tokens),
            str(r.completion_tokens),
            f"{r.latency_mean_s:.3f} s" if r.latency_mean_s is not None else "-",
            f"{r.cost:.6f}" if r.cost is not None else "-",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    priced = [r.cost for r in rows if r.cost is not None]
    if priced:
        print(f"total cost: {sum(priced):.6f} (prices per million tokens from the configuration)")
    return 0

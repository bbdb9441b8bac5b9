"""`mlx-sidecar config show|path|check`: the effective settings and where each came from."""

from __future__ import annotations

import argparse
import json
import sys

from sidecar.cli import main as cli_main
from sidecar.config import Settings
from sidecar.config_file import ConfigError, config_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="the configuration file and the effective settings")
    actions = p.add_subparsers(dest="config_action", required=True)
    show = actions.add_parser("show", help="effective settings and their source (secrets masked)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=run_show, without_settings=True)
    actions.add_parser("path", help="the configuration file read").set_defaults(
        run=run_path, without_settings=True
    )
    actions.add_parser("check", help="check the file (exit 2 with the problems)").set_defaults(
        run=run_check, without_settings=True
    )


def run_path(args: argparse.Namespace, settings: Settings | None) -> int:
    where = config_path(args.config)
    state = "exists" if where.path.exists() else "does not exist"
    print(where.path)
    print(f"({state}; chosen by {where.chosen_by})", file=sys.stderr)
    return 0


def run_check(args: argparse.Namespace, settings: Settings | None) -> int:
    try:
        loaded = cli_main.load(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    exists = loaded.path.path.exists()
    print(f"ok: {loaded.path.path}" + ("" if exists else " (absent: defaults and environment)"))
    return 0


def run_show(args: argparse.Namespace, settings: Settings | None) -> int:
    try:
        loaded = cli_main.load(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = loaded.effective()
    if args.json:
        print(json.dumps({k: {"value": v, "source": s} for k, v, s in rows}, indent=2))
        return 0
    print(f"# {loaded.path.path} ({'read' if loaded.file else 'not present'})")
    width = max(len(k) for k, _, _ in rows)
    for key, value, source in rows:
        print(f"{key:<{width}}  {json.dumps(value):<40}  {source}")
    return 0

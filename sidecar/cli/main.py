"""`mlx-sidecar` command line: one subcommand per job, each in its own module."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sidecar.config import Settings
from sidecar.mlx_cleanup import clear_thread_streams


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlx-sidecar", description=__doc__)
    parser.add_argument(
        "--models-dir", type=Path, help="models directory (default ~/.cache/mlx-sidecar/models)"
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="log level for stderr (default WARNING)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    from sidecar.cli import (
        bench_cmd,
        daemon_cmd,
        generate_cmd,
        models_cmd,
        serve_cmd,
        stdio_cmd,
    )

    stdio_cmd.add_parser(sub)
    daemon_cmd.add_parser(sub)
    serve_cmd.add_parser(sub)
    models_cmd.add_parser(sub)
    generate_cmd.add_parser(sub)
    bench_cmd.add_parser(sub)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {}
    if args.models_dir:
        overrides["models_dir"] = args.models_dir
    return Settings(**overrides)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code = args.run(args, settings_from(args))
    except KeyboardInterrupt:
        code = 130
    finally:
        clear_thread_streams()
    sys.exit(code or 0)

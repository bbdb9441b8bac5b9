"""`mlx-sidecar` command line: one subcommand per job, each in its own module."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from sidecar.config_file import ConfigError, Loaded, load_settings
from sidecar.mlx_cleanup import clear_thread_streams

# Flags that set a setting (argparse dest -> setting name): a flag given wins over the
# environment and the configuration file; one not given leaves them be.
FLAG_SETTINGS = {
    "models_dir": "models_dir",
    "log_level": "log_level",
    "host": "http_host",
    "port": "http_port",
    "http_port": "http_port",
    "api_key": "api_key",
    "api_key_file": "api_key_file",
    "cors_origin": "cors_origins",
    "allow_host": "allowed_hosts",
    "grace": "daemon_grace_s",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlx-sidecar", description=__doc__)
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="configuration file (default: env MLX_SIDECAR_CONFIG, else "
        "$XDG_CONFIG_HOME/mlx-sidecar/config.toml)",
    )
    parser.add_argument(
        "--models-dir", type=Path, help="models directory (default ~/.cache/mlx-sidecar/models)"
    )
    parser.add_argument("--log-level", help="log level for stderr (default warning)")
    sub = parser.add_subparsers(dest="command", required=True)

    from sidecar.cli import (
        bench_cmd,
        config_cmd,
        daemon_cmd,
        generate_cmd,
        models_cmd,
        serve_cmd,
        stdio_cmd,
        usage_cmd,
    )

    stdio_cmd.add_parser(sub)
    daemon_cmd.add_parser(sub)
    serve_cmd.add_parser(sub)
    models_cmd.add_parser(sub)
    generate_cmd.add_parser(sub)
    bench_cmd.add_parser(sub)
    config_cmd.add_parser(sub)
    usage_cmd.add_parser(sub)
    return parser


def cli_overrides(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """(setting -> value, setting -> flag) for the setting flags given on this command line."""
    values: dict[str, Any] = {}
    flags: dict[str, str] = {}
    for dest, setting in FLAG_SETTINGS.items():
        value = getattr(args, dest, None)
        if value is None or value == []:
            continue
        values[setting] = value
        flags[setting] = "--" + dest.replace("_", "-")
    return values, flags


def load(args: argparse.Namespace) -> Loaded:
    values, flags = cli_overrides(args)
    return load_settings(args.config, values, flags)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        loaded = load(args)
    except ConfigError as e:
        if getattr(args, "without_settings", False):  # `config path|check` report it themselves
            sys.exit(args.run(args, None) or 0)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        stream=sys.stderr,
        level=loaded.settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args.loaded = loaded
    try:
        code = args.run(args, loaded.settings)
    except KeyboardInterrupt:
        code = 130
    finally:
        if argv is None:
            # The process's own command line: its main thread is done with MLX. A caller that
            # passes argv (a test, an embedding program) keeps its thread's streams, which it
            # may still use; clearing them would fail its next MLX call ("no Stream(cpu, 0)").
            clear_thread_streams()
    sys.exit(code or 0)

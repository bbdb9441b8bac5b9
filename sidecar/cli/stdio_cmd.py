"""`mlx-sidecar stdio`: JSON-RPC (LSP) on stdio for the editor; `--http-port` also serves the
OpenAI API from the same engine."""

from __future__ import annotations

import argparse

from sidecar.config import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stdio", help="JSON-RPC language server on stdio for the editor")
    p.add_argument("--http-port", type=int, default=None, help="also serve the OpenAI API here")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from sidecar.lsp.stdio import run_stdio

    port = args.http_port if args.http_port is not None else settings.http_port
    return run_stdio(settings, port)

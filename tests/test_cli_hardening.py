"""Bad input on the command line (issue 23, defect 6): each is a one-line error and exit 2,
never a traceback: a corrupt usage ledger, a TOML file nested past the parser's recursion, and
settings out of range, which `config check` now finds before `serve` would crash on them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def sidecar(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLX_SIDECAR_")}
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=120,
    )


def one_line_error(run: subprocess.CompletedProcess[str], *words: str) -> None:
    assert run.returncode == 2, (run.returncode, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert "Traceback" not in run.stderr
    assert all(w in lines[0] for w in words), lines[0]


def test_usage_on_a_corrupt_ledger_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "usage.sqlite3"
    db.write_bytes(b"this is not a database at all" * 100)
    run = sidecar("usage", env={"MLX_SIDECAR_USAGE_DB": str(db)})
    one_line_error(run, str(db), "not a database")


def test_a_deeply_nested_toml_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    for action in ("check", "show"):
        one_line_error(sidecar("--config", str(config), "config", action), "nested too deeply")


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("http_port = 99999999", "http_port"),
        ("http_port = -1", "http_port"),
        ("max_batch = 0", "max_batch"),
        ("memory_budget_bytes = -5", "memory_budget_bytes"),
    ],
)
def test_config_check_finds_settings_out_of_range(tmp_path: Path, line: str, key: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(line + "\n")
    one_line_error(sidecar("--config", str(config), "config", "check"), key)
    # and `serve` says the same instead of crashing when it binds
    one_line_error(sidecar("--config", str(config), "serve"), key)

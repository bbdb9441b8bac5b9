"""`mlx-sidecar bench`: the suites run on the real default models and print their tables;
bad arguments give a clear message, not a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.cli import cli


def test_engine_suite_prints_table_next_to_raw_mlx_lm(models_dir: Path) -> None:
    out = cli(
        models_dir,
        "bench",
        "--suite",
        "engine",
        "--concurrency",
        "1,2",
        "--max-tokens",
        "4",
        "--skip-embeddings",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert "| concurrency | engine | raw BatchGenerator |" in out.stdout
    figures = json.loads(out.stdout[out.stdout.index("\n{") :])
    rows = figures["engine"]["text"]
    assert [r["concurrency"] for r in rows] == [1, 2]
    assert all(r["engine_tps"] > 0 and r["raw_batch_tps"] > 0 for r in rows)


def test_unknown_suite_and_missing_session_are_clear_errors(
    models_dir: Path, tmp_path: Path
) -> None:
    bad = cli(models_dir, "bench", "--suite", "speed")
    assert bad.returncode == 2
    assert "unknown suite speed" in bad.stderr and "Traceback" not in bad.stderr
    missing = cli(
        models_dir, "bench", "--suite", "typing", "--typing-session", str(tmp_path / "x.json")
    )
    assert missing.returncode == 2
    assert "typing session not found" in missing.stderr and "Traceback" not in missing.stderr
    # A budget the server would drop (it falls back to its default) is refused, not measured
    # under a table that names it.
    budget = cli(models_dir, "bench", "--suite", "typing", "--typing-max-time-ms", "100000")
    assert budget.returncode == 2 and "Traceback" not in budget.stderr
    assert "--typing-max-time-ms 100000: Input should be less than or equal to 60000" in (
        budget.stderr
    )


def test_structured_suite_compares_constrained_with_free_decoding(models_dir: Path) -> None:
    out = cli(
        models_dir,
        "bench",
        "--suite",
        "structured",
        "--structured-concurrency",
        "1,2",
        "--max-tokens",
        "4",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert "| streams | free tok/s | constrained tok/s | ratio (wall) |" in out.stdout
    rows = json.loads(out.stdout[out.stdout.index("\n{") :])["structured"]["rows"]
    assert [r["streams"] for r in rows] == [1, 2]
    assert all(r["cpu_ratio"] > 0 and r["mask_us_per_token"] > 0 for r in rows)
    assert rows[0]["fewest_tokens"] == 4  # the schema outlasts the budget: equal work per mode
    assert "mixed_cpu_ratio" in rows[1]


def test_fim_suite_direct_path_reports_and_exits_cleanly(models_dir: Path) -> None:
    """The direct path runs MLX on a pool thread: its streams are cleared there, or the process
    aborted at exit after printing the report (exit 134)."""
    out = cli(models_dir, "bench", "--suite", "fim", "--limit", "1", "--fim-paths", "direct")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "exact match" in out.stdout and "direct" in out.stdout

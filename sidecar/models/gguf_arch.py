"""What each supported GGUF architecture becomes for mlx-lm: its config.json, llama.cpp's tensor
names mapped to Hugging Face's, and the changes llama.cpp's converter made to some tensors:

- llama: q/k rows permuted for llama.cpp's rotary layout (undone here);
- qwen2 / qwen3: stored as Hugging Face has them (qwen3 adds q/k norms);
- gemma3: every RMSNorm weight stored as `1 + w` (Gemma's norm multiplies by `1 + w`, and
  llama.cpp's converter folds the 1 in); mlx-lm's Gemma 3 adds it itself, so it is subtracted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sidecar.models.gguf_file import GGUFImportError

LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
GEMMA3_LAYER_NAMES = {
    **LAYER_NAMES,
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
GEMMA3_SLIDING_WINDOW_PATTERN = 6  # llama.cpp hard-codes it too: it is not in the metadata


def unpermute_rows(x: np.ndarray, n_heads: int) -> np.ndarray:
    """Invert llama.cpp's `permute` of q/k rows (interleaved rotary halves -> HF layout)."""
    rows = x.shape[0]
    return x.reshape(n_heads, rows // n_heads // 2, 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


Transform = Callable[[str, np.ndarray, dict[str, Any]], np.ndarray]


def _llama_transform(part: str, x: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    if part == "attn_q":
        return unpermute_rows(x, config["num_attention_heads"])
    if part == "attn_k":
        return unpermute_rows(x, config["num_key_value_heads"])
    return x


def _gemma_transform(part: str, x: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    return x - 1.0 if part.endswith("norm") else x


def _no_transform(part: str, x: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    return x


@dataclass(frozen=True)
class Architecture:
    model_type: str
    hf_class: str
    layer_names: dict[str, str] = field(default_factory=lambda: LAYER_NAMES)
    transform: Transform = _no_transform

    def hf_name(self, gguf_name: str) -> tuple[str, str]:
        """(Hugging Face name, llama.cpp part) of a tensor, e.g. `blk.3.attn_q.bias`."""
        base, _, suffix = gguf_name.rpartition(".")
        if base.startswith("blk."):
            _, layer, part = base.split(".", 2)
            if part not in self.layer_names:
                raise GGUFImportError(f"unexpected tensor {gguf_name!r} for {self.model_type}")
            return f"model.layers.{layer}.{self.layer_names[part]}.{suffix}", part
        if base not in TOP_NAMES:
            raise GGUFImportError(f"unexpected tensor {gguf_name!r} for {self.model_type}")
        return f"{TOP_NAMES[base]}.{suffix}", base


ARCHITECTURES = {
    "llama": Architecture("llama", "LlamaForCausalLM", transform=_llama_transform),
    "qwen2": Architecture("qwen2", "Qwen2ForCausalLM"),
    "qwen3": Architecture("qwen3", "Qwen3ForCausalLM"),
    "gemma3": Architecture(
        "gemma3_text", "Gemma3ForCausalLM", GEMMA3_LAYER_NAMES, transform=_gemma_transform
    ),
}


def architecture_of(arch: str) -> Architecture:
    if arch not in ARCHITECTURES:
        raise GGUFImportError(
            f"architecture {arch!r} is not supported (supported: {', '.join(ARCHITECTURES)})"
        )
    return ARCHITECTURES[arch]


def build_config(metadata: dict[str, Any], tensor_names: set[str]) -> dict[str, Any]:
    """config.json for mlx-lm from the GGUF hyperparameters."""
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        raise GGUFImportError("GGUF metadata has no general.architecture (empty or corrupt file?)")
    spec = architecture_of(arch)

    def hp(name: str, default: Any = None) -> Any:
        value = metadata.get(f"{arch}.{name}", default)
        if value is None:
            raise GGUFImportError(f"GGUF metadata lacks {arch}.{name}")
        return value

    tokens = metadata.get("tokenizer.ggml.tokens") or []
    n_heads = int(hp("attention.head_count"))
    hidden = int(hp("embedding_length"))
    head_dim = int(hp("attention.key_length", hp("rope.dimension_count", hidden // n_heads)))
    config: dict[str, Any] = {
        "architectures": [spec.hf_class],
        "model_type": spec.model_type,
        "hidden_size": hidden,
        "num_hidden_layers": int(hp("block_count")),
        "intermediate_size": int(hp("feed_forward_length")),
        "num_attention_heads": n_heads,
        "num_key_value_heads": int(hp("attention.head_count_kv", n_heads)),
        "head_dim": head_dim,
        "rms_norm_eps": float(hp("attention.layer_norm_rms_epsilon", 1e-6)),
        "vocab_size": int(hp("vocab_size", len(tokens))),
        "max_position_embeddings": int(hp("context_length", 4096)),
        "rope_theta": float(hp("rope.freq_base", 10000.0)),
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "torch_dtype": "float32",
    }
    scaling = metadata.get(f"{arch}.rope.scaling.factor")
    if scaling and metadata.get(f"{arch}.rope.scaling.type", "linear") == "linear":
        config["rope_scaling"] = {"rope_type": "linear", "factor": float(scaling)}
    if arch == "gemma3":
        config.update(
            query_pre_attn_scalar=head_dim,
            sliding_window=int(hp("attention.sliding_window", 512)),
            sliding_window_pattern=GEMMA3_SLIDING_WINDOW_PATTERN,
            rope_local_base_freq=10000.0,
        )
    for key, name in (
        ("bos_token_id", "bos"),
        ("eos_token_id", "eos"),
        ("pad_token_id", "padding"),
    ):
        value = metadata.get(f"tokenizer.ggml.{name}_token_id")
        if value is not None:
            config[key] = int(value)
    return config

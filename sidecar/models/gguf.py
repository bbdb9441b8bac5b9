"""Import a llama-family GGUF file as an MLX model directory that `mlx_lm.load` loads.

`mx.load(path, return_metadata=True)` already gives the tensors (Q4_0/Q4_1/Q8_0 as MLX affine
quantized weights with group size 32) and every metadata key. What is left to do here: a
config.json from the hyperparameters, a tokenizer.json / tokenizer_config.json (with the chat
template) from the vocabulary, llama.cpp's tensor names mapped to Hugging Face's, and llama.cpp's
q/k row permutation undone (its converter permutes them for its rotary embedding layout).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import mlx.core as mx

from sidecar.errors import InvalidRequest
from sidecar.models.atomic import staged_dir

SUPPORTED_ARCHITECTURES = ("llama",)
DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
KEEP_QUANTIZED = "quantized"
GROUP_SIZE = 32  # what MLX's GGUF loader produces for Q4_0 / Q4_1 / Q8_0

TENSOR_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}

# Pre-tokenizer per `tokenizer.ggml.pre` (llama.cpp's names) for byte-level BPE vocabularies.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
DIGIT_SPLIT_PRES = {"smollm", "starcoder", "refact", "codeshell"}
PLAIN_BYTE_LEVEL_PRES = {"gpt2", "default", "gpt-2", "olmo", "jais"}
LLAMA3_PRES = {"llama-bpe", "llama3", "smaug-bpe", "dbrx"}

TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4


class GGUFImportError(InvalidRequest):
    """The file cannot be imported; the message says why."""


ProgressFn = Callable[[str, int, int], None]


def default_dtype() -> str:
    """float32 where only the CPU runs MLX (its float32 matmuls use OpenBLAS), else quantized."""
    return KEEP_QUANTIZED if mx.metal.is_available() or _cuda_available() else "float32"


def _cuda_available() -> bool:
    try:
        return bool(mx.cuda.is_available())
    except AttributeError:
        return False


def read_gguf(path: Path) -> tuple[dict[str, mx.array], dict[str, Any]]:
    if not path.is_file():
        raise GGUFImportError(f"{path}: no such file")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise GGUFImportError(f"{path}: not a GGUF file (bad magic number)")
    try:
        # With return_metadata, mx.load returns (tensors, metadata); its stub types every mode.
        weights, metadata = cast(
            tuple[dict[str, mx.array], dict[str, Any]], mx.load(str(path), return_metadata=True)
        )
    except Exception as e:  # MLX raises RuntimeError/ValueError on truncated or corrupt files
        raise GGUFImportError(f"{path}: cannot read GGUF ({e})") from e
    return weights, metadata


def _scalar(metadata: dict[str, Any], key: str, default: Any = None) -> Any:
    value = metadata.get(key, default)
    if isinstance(value, mx.array):
        return value.item()
    return value


def build_config(metadata: dict[str, Any], weights: dict[str, mx.array]) -> dict[str, Any]:
    arch = _scalar(metadata, "general.architecture")
    if arch is None:
        raise GGUFImportError("GGUF metadata has no general.architecture (empty or corrupt file?)")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise GGUFImportError(
            f"architecture {arch!r} is not supported (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )

    def hp(name: str, default: Any = None) -> Any:
        value = _scalar(metadata, f"{arch}.{name}", default)
        if value is None:
            raise GGUFImportError(f"GGUF metadata lacks {arch}.{name}")
        return value

    tokens = metadata.get("tokenizer.ggml.tokens") or []
    n_heads = int(hp("attention.head_count"))
    hidden = int(hp("embedding_length"))
    config: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": int(hp("block_count")),
        "intermediate_size": int(hp("feed_forward_length")),
        "num_attention_heads": n_heads,
        "num_key_value_heads": int(hp("attention.head_count_kv", n_heads)),
        "head_dim": int(hp("rope.dimension_count", hidden // n_heads)),
        "rms_norm_eps": float(hp("attention.layer_norm_rms_epsilon", 1e-5)),
        "vocab_size": int(hp("vocab_size", len(tokens))),
        "max_position_embeddings": int(hp("context_length", 4096)),
        "rope_theta": float(hp("rope.freq_base", 10000.0)),
        "tie_word_embeddings": "output.weight" not in weights,
        "torch_dtype": "float32",
    }
    for key, field in (
        ("bos_token_id", "bos"),
        ("eos_token_id", "eos"),
        ("pad_token_id", "padding"),
    ):
        value = _scalar(metadata, f"tokenizer.ggml.{field}_token_id")
        if value is not None:
            config[key] = int(value)
    return config


def _hf_name(gguf_name: str) -> str:
    base, _, suffix = gguf_name.rpartition(".")
    if base.startswith("blk."):
        _, layer, part = base.split(".", 2)
        if part not in TENSOR_NAMES:
            raise GGUFImportError(f"unexpected tensor {gguf_name!r}")
        return f"model.layers.{layer}.{TENSOR_NAMES[part]}.{suffix}"
    if base not in TENSOR_NAMES:
        raise GGUFImportError(f"unexpected tensor {gguf_name!r}")
    return f"{TENSOR_NAMES[base]}.{suffix}"


def unpermute_rows(x: mx.array, n_heads: int) -> mx.array:
    """Invert llama.cpp's `permute` of q/k rows (interleaved rotary halves -> HF layout)."""
    rows = x.shape[0]
    return x.reshape(n_heads, rows // n_heads // 2, 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


def _bits(weight: mx.array, scales: mx.array) -> int:
    in_features = scales.shape[-1] * GROUP_SIZE
    return weight.shape[-1] * 32 // in_features


def convert_weights(
    weights: dict[str, mx.array], config: dict[str, Any], dtype: str
) -> tuple[dict[str, mx.array], dict[str, Any] | None]:
    """Map names, un-permute q/k, and either dequantize to `dtype` or keep MLX quantized weights."""
    heads = {"attn_q": config["num_attention_heads"], "attn_k": config["num_key_value_heads"]}
    out: dict[str, mx.array] = {}
    layer_bits: dict[str, int] = {}
    for name, tensor in weights.items():
        if name.endswith((".scales", ".biases")):
            continue
        part = name.split(".")[-2]
        module = _hf_name(name).rsplit(".", 1)[0]
        scales = weights.get(name[: -len("weight")] + "scales")
        biases = weights.get(name[: -len("weight")] + "biases")
        tensors = {"weight": tensor}
        if scales is not None:
            if biases is None:
                raise GGUFImportError(f"quantized tensor {name!r} has no biases")
            bits = _bits(tensor, scales)
            if dtype == KEEP_QUANTIZED:
                tensors.update(scales=scales, biases=biases)
                layer_bits[module] = bits
            else:
                tensors = {
                    "weight": mx.dequantize(
                        tensor, scales, biases, group_size=GROUP_SIZE, bits=bits
                    )
                }
        for suffix, t in tensors.items():
            if part in heads:
                t = unpermute_rows(t, heads[part])
            if dtype in DTYPES and mx.issubdtype(t.dtype, mx.floating):
                t = t.astype(DTYPES[dtype])
            out[f"{module}.{suffix}"] = t
    if not layer_bits:
        return out, None
    common = Counter(layer_bits.values()).most_common(1)[0][0]
    quantization: dict[str, Any] = {"group_size": GROUP_SIZE, "bits": common}
    for module, bits in layer_bits.items():
        if bits != common:
            quantization[module] = {"group_size": GROUP_SIZE, "bits": bits}
    return out, quantization


def _pre_tokenizer(pre: str) -> Any:
    from tokenizers import Regex, pre_tokenizers

    if pre in DIGIT_SPLIT_PRES:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
    if pre in LLAMA3_PRES:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    if pre in PLAIN_BYTE_LEVEL_PRES:
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    raise GGUFImportError(f"tokenizer pre-tokenizer {pre!r} is not supported")


def build_tokenizer(metadata: dict[str, Any], out_dir: Path) -> None:
    """Write tokenizer.json (byte-level BPE via `tokenizers`) and tokenizer_config.json."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors

    kind = _scalar(metadata, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise GGUFImportError(
            f"tokenizer model {kind!r} is not supported (only byte-level BPE, 'gpt2')"
        )
    tokens: list[str] = list(metadata["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in metadata.get("tokenizer.ggml.merges", [])]
    types_arr = metadata.get("tokenizer.ggml.token_type")
    types = types_arr.tolist() if types_arr is not None else [1] * len(tokens)
    pre = _scalar(metadata, "tokenizer.ggml.pre", "default")

    tokenizer = Tokenizer(
        models.BPE(
            vocab={t: i for i, t in enumerate(tokens)},
            merges=merges,
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tokenizer.pre_tokenizer = _pre_tokenizer(pre)
    tokenizer.decoder = decoders.ByteLevel()
    special = [
        AddedToken(tokens[i], special=True, normalized=False)
        for i, t in enumerate(types)
        if t == TOKEN_TYPE_CONTROL
    ]
    user = [
        AddedToken(tokens[i], special=False, normalized=False)
        for i, t in enumerate(types)
        if t == TOKEN_TYPE_USER_DEFINED
    ]
    tokenizer.add_special_tokens(special)
    if user:
        tokenizer.add_tokens(user)

    def token_of(field: str) -> str | None:
        idx = _scalar(metadata, f"tokenizer.ggml.{field}_token_id")
        return tokens[int(idx)] if idx is not None and int(idx) < len(tokens) else None

    bos, eos = token_of("bos"), token_of("eos")
    add_bos = bool(_scalar(metadata, "tokenizer.ggml.add_bos_token", False))
    if add_bos and bos is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokens.index(bos))]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.save(str(out_dir / "tokenizer.json"))

    tok_config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "pad_token": token_of("padding"),
        "unk_token": token_of("unknown"),
        "add_bos_token": add_bos,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(
            _scalar(metadata, f"{_scalar(metadata, 'general.architecture')}.context_length", 4096)
        ),
    }
    template = _scalar(metadata, "tokenizer.chat_template")
    if template:
        tok_config["chat_template"] = template
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps({k: v for k, v in tok_config.items() if k.endswith("_token") and v}, indent=2)
    )


def default_name(path: Path, metadata: dict[str, Any]) -> str:
    stem = re.sub(r"\.(Q\d\w*|F16|F32|BF16)$", "", path.stem, flags=re.IGNORECASE)
    return stem or str(_scalar(metadata, "general.name", "model"))


def import_gguf(
    path: Path,
    models_dir: Path,
    name: str | None = None,
    dtype: str | None = None,
    progress: ProgressFn | None = None,
    overwrite: bool = False,
) -> Path:
    """Import `path` into `models_dir/<name>`; return the model directory.

    Everything is written to a staging directory beside the target and renamed into place at
    the end (`staged_dir`), so a failed import never leaves a half-written model in the store.
    """
    dtype = dtype or default_dtype()
    if dtype not in (*DTYPES, KEEP_QUANTIZED):
        raise GGUFImportError(
            f"unknown dtype {dtype!r} (choose {', '.join((*DTYPES, KEEP_QUANTIZED))})"
        )
    step = progress or (lambda _msg, _done, _total: None)
    path = Path(path)
    step("reading GGUF", 0, 4)
    weights, metadata = read_gguf(path)
    name = name or default_name(path, metadata)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise GGUFImportError(f"invalid model name {name!r}: use letters, digits, '.', '_', '-'")
    target = models_dir / name
    if target.exists() and not overwrite:
        raise GGUFImportError(f"model {name!r} already exists at {target}")

    config = build_config(metadata, weights)
    models_dir.mkdir(parents=True, exist_ok=True)
    with staged_dir(target, replace=True) as tmp:
        step("building tokenizer", 1, 4)
        build_tokenizer(metadata, tmp)
        step("converting weights", 2, 4)
        converted, quantization = convert_weights(weights, config, dtype)
        if quantization:
            config["quantization"] = quantization
        config["torch_dtype"] = dtype if dtype in DTYPES else "float16"
        mx.eval(converted)
        step("writing weights", 3, 4)
        mx.save_safetensors(str(tmp / "model.safetensors"), converted, metadata={"format": "mlx"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        (tmp / "generation_config.json").write_text(
            json.dumps({k: config[k] for k in ("bos_token_id", "eos_token_id") if k in config})
        )
        (tmp / "sidecar_source.json").write_text(
            json.dumps({"imported_from": str(path), "format": "gguf", "dtype": dtype})
        )
    step("done", 4, 4)
    return target

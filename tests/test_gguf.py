"""GGUF import: the imported SmolLM2 answers coherently, its config matches the GGUF metadata,
and broken files give clear errors without leaving a model behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm import generate

from sidecar.models.defaults import smollm_gguf
from sidecar.models.gguf import GGUFImportError, import_gguf, unpermute_rows
from sidecar.models.store import ModelStore
from tests.helpers.mlx_models import load_text_model


def ask(model_dir: Path, question: str, max_tokens: int = 16) -> str:
    model, tokenizer = load_text_model(model_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True
    )
    return generate(model, tokenizer, prompt, max_tokens=max_tokens)


def test_default_import_answers_and_matches_metadata(models_dir: Path) -> None:
    model_dir = models_dir / "SmolLM2-135M-Instruct"
    assert "Paris" in ask(model_dir, "What is the capital of France?")

    # `mx.load` is declared to return any of its three shapes; with metadata it is the pair
    _, meta = cast(
        "tuple[dict[str, mx.array], dict[str, Any]]",
        mx.load(str(smollm_gguf()), return_metadata=True),
    )
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["hidden_size"] == meta["llama.embedding_length"].item() == 576
    assert config["num_hidden_layers"] == meta["llama.block_count"].item()
    assert config["num_attention_heads"] == meta["llama.attention.head_count"].item()
    assert config["num_key_value_heads"] == meta["llama.attention.head_count_kv"].item()
    assert config["intermediate_size"] == meta["llama.feed_forward_length"].item()
    assert config["rope_theta"] == pytest.approx(meta["llama.rope.freq_base"].item())
    assert config["vocab_size"] == len(meta["tokenizer.ggml.tokens"])
    assert config["tie_word_embeddings"] is True  # the GGUF has no output.weight
    assert "quantization" not in config  # float32 by default on a CPU-only machine
    tok_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    assert tok_config["chat_template"] == meta["tokenizer.chat_template"]
    assert tok_config["eos_token"] == "<|im_end|>"


def test_tokenizer_round_trips_code_and_keeps_special_tokens(models_dir: Path) -> None:
    _, tokenizer = load_text_model(models_dir / "SmolLM2-135M-Instruct")
    text = "def add(a, b):\n    return a + b  # 12345 café ✓\n"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    digits = tokenizer.encode("2024")
    assert len(digits) == 4  # SmolLM's pre-tokenizer splits digits one by one
    assert tokenizer.encode("<|im_start|>") == [1]


def test_quantized_import_keeps_mlx_quantized_weights(tmp_path: Path) -> None:
    out = import_gguf(smollm_gguf(), tmp_path, name="smol-q4", dtype="quantized")
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"]["bits"] == 4
    assert config["quantization"]["group_size"] == 32
    assert "Paris" in ask(out, "What is the capital of France?", max_tokens=10)
    info = ModelStore(tmp_path, use_hf_cache=False).info("smol-q4")
    assert info.quantization and info.quantization.startswith("4-bit")


def test_unpermute_inverts_llama_cpp_permutation() -> None:
    n_heads, head_dim, cols = 3, 8, 5
    w = np.arange(n_heads * head_dim * cols).reshape(n_heads * head_dim, cols)
    # llama.cpp's convert script: reshape(n_head, 2, dim/2, ...).swapaxes(1, 2)
    permuted = w.reshape(n_heads, 2, head_dim // 2, cols).swapaxes(1, 2).reshape(w.shape)
    assert np.array_equal(unpermute_rows(permuted, n_heads), w)


@pytest.mark.parametrize("keep_bytes", [4, 1000, 5_000_000])
def test_truncated_gguf_fails_clearly_and_leaves_nothing(tmp_path: Path, keep_bytes: int) -> None:
    broken = tmp_path / "broken.gguf"
    with smollm_gguf().open("rb") as f:
        broken.write_bytes(f.read(keep_bytes))
    store = tmp_path / "store"
    with pytest.raises(GGUFImportError, match="broken.gguf"):
        import_gguf(broken, store, name="broken")
    assert not (store / "broken").exists()
    assert not store.exists() or list(store.iterdir()) == []
    assert ModelStore(store, use_hf_cache=False).list() == []


def test_not_a_gguf_and_bad_options_fail_clearly(tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(GGUFImportError, match="not a GGUF file"):
        import_gguf(text, tmp_path / "store")
    with pytest.raises(GGUFImportError, match="no such file"):
        import_gguf(tmp_path / "missing.gguf", tmp_path / "store")
    with pytest.raises(GGUFImportError, match="unknown dtype"):
        import_gguf(smollm_gguf(), tmp_path / "store", dtype="int3")
    with pytest.raises(GGUFImportError, match="invalid model name"):
        import_gguf(smollm_gguf(), tmp_path / "store", name="../escape")

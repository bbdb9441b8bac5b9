"""Model store: listing, kind detection from configs, and clear errors on bad ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.errors import InvalidModelIdError, ModelNotFoundError
from sidecar.models.kinds import detect_kind
from sidecar.models.store import ModelStore
from tests.helpers.cli import cli


@pytest.mark.parametrize(
    ("config", "name", "kind"),
    [
        ({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}, "SmolLM2", "text"),
        ({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}, "Qwen2.5-Coder", "text"),
        ({"model_type": "qwen2_vl", "vision_config": {"depth": 2}}, "tiny", "vision"),
        ({"model_type": "llava", "image_token_index": 32000}, "x", "vision"),
        ({"model_type": "gemma3", "image_token_id": 262144}, "x", "vision"),
        ({"architectures": ["BertModel"], "model_type": "bert"}, "all-MiniLM-L6-v2", "embedding"),
        ({"architectures": ["XLMRobertaModel"]}, "bge-m3", "embedding"),
        ({"model_type": "nomic_bert"}, "nomic-embed-text", "embedding"),
        ({}, "mlx-community/Qwen2-VL-2B-Instruct-4bit", "vision"),
        ({}, "mlx-community/bge-small-en-v1.5", "embedding"),
        ({}, "some-llm", "text"),
    ],
)
def test_kind_detection(config: dict, name: str, kind: str) -> None:
    assert detect_kind(config, name) == kind


def test_lists_default_models_with_details(models_dir: Path) -> None:
    models = {m.id: m for m in ModelStore(models_dir, use_hf_cache=False).list()}
    smol, minilm = models["SmolLM2-135M-Instruct"], models["all-MiniLM-L6-v2"]
    assert (smol.kind, minilm.kind) == ("text", "embedding")
    assert smol.fim is None  # SmolLM2 has no fill-in-the-middle tokens
    assert smol.quantization == "float32"
    assert 400e6 < smol.size_bytes < 700e6
    assert 50e6 < minilm.size_bytes < 150e6


def test_hf_cache_snapshots_are_listed(tmp_path: Path, models_dir: Path, monkeypatch) -> None:
    snap = tmp_path / "hub" / "models--acme--tiny-embed" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    src = models_dir / "all-MiniLM-L6-v2"
    for f in ("config.json", "tokenizer.json", "model.safetensors"):
        (snap / f).symlink_to(src / f)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    store = ModelStore(tmp_path / "empty-store", use_hf_cache=True)
    info = store.info("acme/tiny-embed")
    assert (info.kind, info.source, info.path) == ("embedding", "hf-cache", snap)
    with pytest.raises(InvalidModelIdError, match="not in the sidecar's store"):
        store.remove("acme/tiny-embed")  # never delete from the shared HF cache
    assert snap.exists()


@pytest.mark.parametrize("bad", ["../etc", "a/../../b", "/abs/path", "", "a b", "x/y/z"])
def test_bad_model_ids_are_refused(models_dir: Path, bad: str) -> None:
    with pytest.raises(InvalidModelIdError, match="model id"):
        ModelStore(models_dir, use_hf_cache=False).path_of(bad)


def test_unknown_model_error_lists_what_exists(models_dir: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="SmolLM2-135M-Instruct"):
        ModelStore(models_dir, use_hf_cache=False).info("gpt-17")


def test_remove_deletes_only_that_model(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    for name in ("one", "two"):
        d = store_dir / name
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
        (d / "model.safetensors").write_bytes(b"x")
    store = ModelStore(store_dir, use_hf_cache=False)
    store.remove("one")
    assert [m.id for m in store.list()] == ["two"]


def test_cli_models_list_info_and_errors(models_dir: Path) -> None:
    listed = cli(models_dir, "models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {m["id"] for m in json.loads(listed.stdout)} >= {
        "SmolLM2-135M-Instruct",
        "all-MiniLM-L6-v2",
    }
    info = cli(models_dir, "models", "info", "SmolLM2-135M-Instruct")
    assert json.loads(info.stdout)["runtime"]["device"].startswith("Device(")
    missing = cli(models_dir, "models", "info", "nope")
    assert missing.returncode == 2
    assert "not found" in missing.stderr and "Traceback" not in missing.stderr
    bad = cli(models_dir, "models", "rm", "../x")
    assert bad.returncode == 2 and "invalid model id" in bad.stderr


def test_cli_import_and_generate(models_dir: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 64)
    failed = cli(tmp_path / "store", "models", "import-gguf", str(junk))
    assert failed.returncode == 2 and "cannot read GGUF" in failed.stderr
    assert "Traceback" not in failed.stderr
    out = cli(models_dir, "generate", "--max-tokens", "4", "The capital of France is")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() != ""
    assert "completion tokens" in out.stderr

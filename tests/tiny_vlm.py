"""A tiny random-weight Qwen2-VL vision model for tests: text hidden 64 with 2 layers, a 2-block
vision tower (embed 32, patch 14, merge 2), SmolLM2's tokenizer plus Qwen2-VL's vision tokens,
Qwen2-VL's chat template and image processor config (images are shrunk to at most 56x56 pixels,
i.e. 4 image tokens, so tests stay fast on the CPU).

It loads with `mlx_vlm.load`, the store detects it as kind "vision", and its logits depend on
the image: enough to test vision plumbing end to end (streaming, cancellation, scheduling),
not answer quality.

    model_id = tiny_vlm_model(models_dir)   # built on first use into models_dir, then reused
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import sidecar  # noqa: F401  (loads OpenBLAS before mlx.core)
from sidecar.models.defaults import CHAT_MODEL, install_defaults
from tests.tiny_models import _tokenizer_with

TINY_VLM_ID = "tiny-qwen2-vl"
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

# Qwen2-VL-2B-Instruct's chat template (content may be a string or a list of typed parts).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

PREPROCESSOR_CONFIG = {
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2VLProcessor",
    "min_pixels": 28 * 28,
    "max_pixels": 56 * 56,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "do_resize": True,
    "do_rescale": True,
    "do_normalize": True,
    "do_convert_rgb": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}


def make_tiny_vlm(dest: Path, models_dir: Path | None = None, seed: int = 0) -> Path:
    """Build the tiny Qwen2-VL into `dest` (atomically: a temp dir renamed into place).

    `models_dir` is where the default SmolLM2 lives (default: `dest`'s parent)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_vlm.models import qwen2_vl
    from mlx_vlm.utils import update_module_configs

    dest = Path(dest)
    source = Path(models_dir or dest.parent) / CHAT_MODEL
    if not (source / "tokenizer.json").is_file():
        install_defaults(source.parent)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-vlm-", dir=dest.parent))
    try:
        vocab_size = _tokenizer_with(source, tmp, VISION_TOKENS)
        tok_config = json.loads((tmp / "tokenizer_config.json").read_text())
        ids = {v["content"]: int(k) for k, v in tok_config["added_tokens_decoder"].items()}
        tok_config["chat_template"] = QWEN2_VL_CHAT_TEMPLATE
        tok_config["processor_class"] = "Qwen2VLProcessor"
        (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
        (tmp / "chat_template.json").write_text(
            json.dumps({"chat_template": QWEN2_VL_CHAT_TEMPLATE}, indent=2)
        )
        (tmp / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))
        config = {
            "architectures": ["Qwen2VLForConditionalGeneration"],
            "model_type": "qwen2_vl",
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "intermediate_size": 128,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "rms_norm_eps": 1e-6,
            "vocab_size": vocab_size,
            "max_position_embeddings": 4096,
            "rope_theta": 1000000.0,
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
            "tie_word_embeddings": True,
            "torch_dtype": "float32",
            "bos_token_id": ids.get("<|im_start|>", 1),
            "eos_token_id": ids.get("<|im_end|>", 2),
            "vision_start_token_id": ids["<|vision_start|>"],
            "vision_end_token_id": ids["<|vision_end|>"],
            "image_token_id": ids["<|image_pad|>"],
            "video_token_id": ids["<|video_pad|>"],
            "vision_config": {
                "model_type": "qwen2_vl",
                "depth": 2,
                "embed_dim": 32,
                "hidden_size": 64,
                "num_heads": 2,
                "mlp_ratio": 2,  # an int: the vision MLP's width is embed_dim * mlp_ratio
                "in_channels": 3,
                "patch_size": 14,
                "spatial_patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
            },
        }
        mx.random.seed(seed)
        plain = json.loads(json.dumps(config))  # from_dict edits its argument
        model_config = update_module_configs(
            qwen2_vl.ModelConfig.from_dict(plain), qwen2_vl, plain, ["text", "vision"]
        )
        model = qwen2_vl.Model(model_config)
        weights = dict(tree_flatten(model.parameters()))
        mx.save_safetensors(str(tmp / "model.safetensors"), weights, metadata={"format": "mlx"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if dest.exists():
            shutil.rmtree(dest, ignore_errors=True)
        try:
            tmp.rename(dest)
        except OSError:  # another session built it at the same moment: keep theirs
            if not (dest / "model.safetensors").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def tiny_vlm_model(models_dir: Path) -> str:
    """The id of the tiny Qwen2-VL in `models_dir`, built on first use."""
    dest = Path(models_dir) / TINY_VLM_ID
    if not (dest / "model.safetensors").is_file():
        make_tiny_vlm(dest, models_dir)
    return TINY_VLM_ID

"""What a loaded model can take: the positions it was trained for, the ids of its vocabulary,
and the ids that end its turns."""

from __future__ import annotations

from typing import Any

from sidecar.errors import EngineError


def context_length_of(model: Any) -> int:
    """The positions `model` was trained for: a text model's `args`, a vision model's text
    config (4096 when neither says)."""
    args = getattr(model, "args", None)
    value = getattr(args, "max_position_embeddings", None) if args is not None else None
    if value is None:
        text_config = getattr(getattr(model, "config", None), "text_config", None)
        value = getattr(text_config, "max_position_embeddings", None)
    return int(value or 4096)


def vocab_size_of(model: Any, tokenizer: Any) -> int:
    """Rows of the model's embedding table: the ids it can take (an id past it reads out of
    bounds and crashes the process)."""
    args = getattr(model, "args", None)
    size = getattr(args, "vocab_size", None) if args is not None else None
    return int(size or len(tokenizer.get_vocab()))


def check_token_ids(ids: list[int], vocab: int) -> None:
    bad = next((t for t in ids if not 0 <= t < vocab), None)
    if bad is not None:
        raise EngineError(f"token id {bad} is out of the model's vocabulary (0 to {vocab - 1})")


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Every id that ends a turn: all EOS ids plus chat end markers the vocabulary has
    (Llama-3 needs both `<|end_of_text|>` and `<|eot_id|>`)."""
    ids = set(getattr(tokenizer, "eos_token_ids", None) or [])
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    for marker in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"):
        if marker in vocab:
            ids.add(vocab[marker])
    return sorted(ids)

"""Streaming detokenizers that keep every character the tokens stand for.

mlx_lm's streaming detokenizers drop the first token's leading space (right for a chat reply,
wrong for a raw continuation or a fill-in-the-middle: "return" + " a + b" must not become
"returna + b"). The engine reports the text exactly; front ends may strip a chat reply's start.
"""

from __future__ import annotations

from typing import Any

from mlx_lm.tokenizer_utils import BPEStreamingDetokenizer, SPMStreamingDetokenizer


def exact_detokenizer(tokenizer: Any) -> Any:
    detokenizer = tokenizer.detokenizer  # a fresh copy per call
    detokenizer.reset()
    if isinstance(detokenizer, BPEStreamingDetokenizer):
        # mlx_lm drops the first token's leading space; an exact continuation keeps it.
        detokenizer._maybe_trim_space = lambda text: text  # type: ignore[method-assign]
    elif isinstance(detokenizer, SPMStreamingDetokenizer):
        detokenizer.trim_space = False
    return detokenizer

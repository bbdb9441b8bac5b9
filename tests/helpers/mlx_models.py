"""Loading a converted text model with mlx_lm, typed: `mlx_lm.load` is declared to return
either a pair or a triple (with the config), though without `return_config` it is the pair."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import mlx.nn as nn
from mlx_lm import load
from mlx_lm.tokenizer_utils import TokenizerWrapper


def load_text_model(path: Path | str) -> tuple[nn.Module, TokenizerWrapper]:
    return cast("tuple[nn.Module, TokenizerWrapper]", load(str(path)))

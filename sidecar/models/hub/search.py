"""Search the hub: models matching a query, with what the editor's picker shows (kind, size
of the files a pull would fetch, quantization, FIM family, whether it is already local)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from huggingface_hub import HfApi
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from sidecar.errors import HubError
from sidecar.models.hub.client import api, endpoint, hub_error, require_online, token
from sidecar.models.hub.files import needed_files, remote_files
from sidecar.models.kinds import ModelKind, detect_kind, fim_family
from sidecar.models.store import ModelStore

log = logging.getLogger(__name__)

DEFAULT_AUTHOR = "mlx-community"
QUANT_NAME = re.compile(
    r"(?:^|[-_])((?:mx|nv)?fp4|\d+(?:\.\d+)?-?bit|bf16|fp16|fp32|float16|float32)\b", re.I
)
# The hub's task tag where it settles the kind (its config excerpt lacks `vision_config`).
PIPELINE_KINDS: dict[str, ModelKind] = {
    "feature-extraction": "embedding",
    "sentence-similarity": "embedding",
    "image-text-to-text": "vision",
    "image-to-text": "vision",
    "visual-question-answering": "vision",
}
FIM_NAME = {
    "starcoder": re.compile(r"starcoder", re.I),
    "codellama": re.compile(r"codellama", re.I),
    "deepseek": re.compile(r"deepseek-coder", re.I),
    "codestral": re.compile(r"codestral", re.I),
    "qwen": re.compile(r"qwen2\.5|qwen3", re.I),
}


@dataclass
class HubModel:
    id: str
    kind: ModelKind
    size_bytes: int | None  # the files a pull would fetch
    quantization: str | None
    fim: str | None  # FIM token family, from the tokenizer config or (marked "?") the name
    downloads: int | None = None
    likes: int | None = None
    last_modified: str | None = None
    gated: bool = False
    local: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


HALF_NAMES = {"bf16": "bfloat16", "fp16": "float16", "float16": "float16", "fp32": "float32"}
DTYPE_NAMES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}


def guess_quantization(name: str, safetensors_dtypes: Iterable[str] = ()) -> str | None:
    """From the repo name (`-4bit`, `-bf16`, ...) or else the safetensors dtypes."""
    m = QUANT_NAME.search(name.rsplit("/", 1)[-1])
    if m:
        q = m.group(1).lower().replace("-", "")
        return q.replace("bit", "-bit") if q.endswith("bit") else HALF_NAMES.get(q, q)
    dtypes = {d.upper() for d in safetensors_dtypes}
    if "U32" in dtypes:
        return "quantized"
    for d, label in DTYPE_NAMES.items():
        if d in dtypes:
            return label
    return None


def guess_fim_from_name(name: str) -> str | None:
    for family, pattern in FIM_NAME.items():
        if pattern.search(name):
            return family
    return None


def _fim_from_tokenizer_config(cfg: dict[str, Any]) -> str | None:
    tokens = {
        t.get("content")
        for t in (cfg.get("added_tokens_decoder") or {}).values()
        if isinstance(t, dict)
    }
    tokens.update(t for t in cfg.get("additional_special_tokens") or [] if isinstance(t, str))
    return fim_family({t for t in tokens if t})


def _details(repo_id: str, session_token: str | None) -> tuple[int | None, str | None]:
    """(size of the needed files, FIM family from tokenizer_config.json) for one search result."""
    api = HfApi(endpoint=endpoint(), token=session_token, library_name="mlx-sidecar")
    try:
        info = api.model_info(repo_id, files_metadata=True)
    except Exception as e:  # a result we cannot detail still lists
        log.debug("model_info %s failed: %s", repo_id, e)
        return None, None
    files = needed_files(remote_files(info))
    size = sum(f.size or 0 for f in files) if files else None
    fim = None
    if any(f.name == "tokenizer_config.json" for f in files):
        try:
            url = f"{endpoint()}/{repo_id}/resolve/{info.sha or 'main'}/tokenizer_config.json"
            r = get_session().get(url, headers=build_hf_headers(token=session_token), timeout=10)
            hf_raise_for_status(r)
            fim = _fim_from_tokenizer_config(r.json())
        except Exception as e:
            log.debug("tokenizer_config %s failed: %s", repo_id, e)
    return size, fim


def search(
    query: str = "",
    *,
    author: str | None = DEFAULT_AUTHOR,
    limit: int = 20,
    sort: str = "downloads",
    details: bool = True,
    store: ModelStore | None = None,
) -> list[HubModel]:
    """Models on the hub matching `query` (by `author`, most downloaded first). With `details`,
    each result's size and FIM family come from its file list and tokenizer config (one
    request each, in parallel)."""
    require_online("search the hub")
    if limit < 1 or limit > 100:
        raise HubError("limit must be between 1 and 100")
    try:
        found = list(
            api().list_models(
                search=query or None,
                author=author or None,
                sort=sort,  # type: ignore[arg-type]
                limit=limit,
                expand=[
                    "downloads",
                    "likes",
                    "tags",
                    "config",
                    "gated",
                    "lastModified",
                    "safetensors",
                    "siblings",
                    "pipeline_tag",
                ],
            )
        )
    except Exception as e:
        raise hub_error(f"search {query!r}", e) from e
    extra: list[tuple[int | None, str | None]] = [(None, None)] * len(found)
    if details and found:
        session_token = token()
        with ThreadPoolExecutor(max_workers=min(8, len(found))) as pool:
            extra = list(pool.map(lambda m: _details(m.id, session_token), found))
    local = set(store.entries()) if store is not None else set()
    results = []
    for m, (size, fim) in zip(found, extra, strict=True):
        config = m.config if isinstance(m.config, dict) else {}
        files = {s.rfilename for s in m.siblings or []}
        dtypes = (m.safetensors.parameters or {}).keys() if m.safetensors else ()
        results.append(
            HubModel(
                id=m.id,
                kind=PIPELINE_KINDS.get(m.pipeline_tag or "")
                or detect_kind(config, m.id + " " + " ".join(m.tags or []), files),
                size_bytes=size,
                quantization=guess_quantization(m.id, dtypes),
                fim=fim or (f"{g}?" if (g := guess_fim_from_name(m.id)) else None),
                downloads=m.downloads,
                likes=m.likes,
                last_modified=m.last_modified.isoformat() if m.last_modified else None,
                gated=bool(m.gated),
                local=m.id in local,
            )
        )
    return results

"""The Hugging Face hub: search models, download one into the store, delete one.

    search(query, author=..., limit=...)        -> list[HubModel]             (search.py)
    download(repo_id, store, progress=, cancel=) -> ModelInfo                  (download.py)
    delete(store, model_id)                     -> Path

`client.py` holds the endpoint, token, offline switch and error wording; `files.py` which files
a model needs; `verify.py` the load check a download passes before the store lists it.
"""

from __future__ import annotations

from pathlib import Path

from sidecar.errors import DownloadCancelledError, HubError
from sidecar.models.hub.download import DownloadProgress, DownloadStats, download
from sidecar.models.hub.files import RemoteFile, needed_files
from sidecar.models.hub.search import (
    DEFAULT_AUTHOR,
    HubModel,
    guess_fim_from_name,
    guess_quantization,
    search,
)
from sidecar.models.store import ModelStore, validate_model_id


def delete(store: ModelStore, model_id: str) -> Path:
    """Delete a model from the store (never anything outside it; '..' ids are refused)."""
    validate_model_id(model_id)
    return store.remove(model_id)


__all__ = [
    "DEFAULT_AUTHOR",
    "DownloadCancelledError",
    "DownloadProgress",
    "DownloadStats",
    "HubError",
    "HubModel",
    "RemoteFile",
    "delete",
    "download",
    "guess_fim_from_name",
    "guess_quantization",
    "needed_files",
    "search",
]

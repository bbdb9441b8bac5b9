"""Talking to the Hugging Face hub: where it is (`HF_ENDPOINT`), who we are (`HF_TOKEN`),
whether we may (`HF_HUB_OFFLINE`), all read at call time, and its failures as one sentence for
the user."""

from __future__ import annotations

import os

import httpx2 as httpx  # huggingface_hub's HTTP client
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from sidecar.errors import HubError

DEFAULT_ENDPOINT = "https://huggingface.co"


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def token() -> str | None:
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    from huggingface_hub import get_token

    return get_token()


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def require_online(action: str) -> None:
    if offline():
        raise HubError(f"cannot {action}: offline mode is on (HF_HUB_OFFLINE is set)")


def api() -> HfApi:
    return HfApi(endpoint=endpoint(), token=token(), library_name="mlx-sidecar")


def hub_error(repo_id: str, e: Exception) -> HubError:
    """Turn huggingface_hub/httpx errors into one clear sentence."""
    if isinstance(e, GatedRepoError):
        return HubError(
            f"{repo_id} is gated: accept its terms on {endpoint()}/{repo_id} and set HF_TOKEN"
        )
    if isinstance(e, RepositoryNotFoundError):
        hint = "" if token() else " (if it is private, set HF_TOKEN)"
        return HubError(f"no model {repo_id!r} on {endpoint()}{hint}")
    if isinstance(e, RevisionNotFoundError):
        return HubError(f"{repo_id}: revision not found")
    if isinstance(e, EntryNotFoundError):
        return HubError(f"{repo_id}: a file listed by the hub is missing ({e})")
    if isinstance(e, HfHubHTTPError):
        status = e.response.status_code if e.response is not None else "?"
        return HubError(f"{repo_id}: the hub answered HTTP {status}")
    if isinstance(e, httpx.TransportError | OSError):
        return HubError(f"cannot reach {endpoint()}: {e}")
    return HubError(f"{repo_id}: {e}")

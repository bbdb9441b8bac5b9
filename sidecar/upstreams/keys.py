"""Where an upstream's API key comes from: the editor (VS Code SecretStorage, handed over at
runtime with `mlx/upstreams/setKey` and kept in memory only), an environment variable, or the OS
keyring. A key is a `SecretStr` from the moment it is read, so a repr, a log line or an error
never shows it; only the Authorization header built in `sidecar.upstreams.client` reads it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Literal

from pydantic import SecretStr

from sidecar.errors import KeyringUnavailable
from sidecar.upstreams.settings import UpstreamSettings

log = logging.getLogger(__name__)

KeySource = Literal["editor", "env", "keyring", "none"]


def from_keyring(reference: str) -> SecretStr | None:
    """The key stored under "service/user" (the user is what follows the first slash), or None
    when there is none. Raises KeyringUnavailable when the OS has no keyring backend, so the
    user reads why rather than getting an unauthenticated request."""
    service, user = reference.split("/", 1)
    try:
        import keyring
        from keyring.errors import KeyringError, NoKeyringError
    except ImportError as e:
        raise KeyringUnavailable(
            f"api_key_keyring {reference!r}: the `keyring` package is not installed "
            "(pip install keyring)"
        ) from e
    try:
        value = keyring.get_password(service, user)
    except NoKeyringError as e:
        raise KeyringUnavailable(
            f"api_key_keyring {reference!r}: this system has no keyring backend; use api_key_env "
            "or the editor's 'MLX: Add Remote Endpoint…' instead"
        ) from e
    except KeyringError as e:
        raise KeyringUnavailable(f"api_key_keyring {reference!r}: {type(e).__name__}") from e
    return SecretStr(value) if value else None


@dataclass
class Keys:
    """The keys of every upstream; the editor's (in memory) win over the environment's, which win
    over the keyring's."""

    runtime: dict[str, SecretStr] = field(default_factory=dict)

    def set(self, upstream: str, key: str | None) -> None:
        if key:
            self.runtime[upstream] = SecretStr(key)
        else:
            self.runtime.pop(upstream, None)

    def source(self, upstream: str, settings: UpstreamSettings) -> KeySource:
        if upstream in self.runtime:
            return "editor"
        if settings.api_key_env and os.environ.get(settings.api_key_env):
            return "env"
        if settings.api_key_keyring:
            return "keyring"
        return "none"

    def get(self, upstream: str, settings: UpstreamSettings) -> SecretStr | None:
        if upstream in self.runtime:
            return self.runtime[upstream]
        if settings.api_key_env:
            value = os.environ.get(settings.api_key_env)
            if value:
                return SecretStr(value)
            if not settings.api_key_keyring:
                log.warning(
                    "upstream %s: environment variable %s is not set; sending no key",
                    upstream,
                    settings.api_key_env,
                )
        if settings.api_key_keyring:
            return from_keyring(settings.api_key_keyring)
        return None

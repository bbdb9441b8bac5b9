"""Each upstream's models, from its `/v1/models`, as `UPSTREAM/MODEL` ids, cached for the
upstream's `models_ttl_s`. An upstream that cannot be listed within `models_timeout_s` (down,
dripping, breaking mid-reply, sending junk) keeps its last list (or none) and its error, which
`GET /v1/models` reports in its `upstream_errors` field: one bad cluster never breaks the list."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from sidecar.errors import SidecarError
from sidecar.upstreams.client import Upstream
from sidecar.wire import RemoteModel

log = logging.getLogger(__name__)
ERROR_RETRY_S = 5.0


@dataclass
class Listing:
    models: list[RemoteModel] = field(default_factory=list)
    fetched_at: float | None = None
    error: str | None = None


class Catalog:
    def __init__(self) -> None:
        self.listings: dict[str, Listing] = {}

    def forget(self, name: str) -> None:
        self.listings.pop(name, None)

    async def models(self, upstreams: list[Upstream]) -> list[RemoteModel]:
        listings = await asyncio.gather(*(self.listing(u) for u in upstreams))
        return [m for listing in listings for m in listing.models]

    async def listing(self, upstream: Upstream) -> Listing:
        listing = self.listings.setdefault(upstream.name, Listing())
        fresh = (
            listing.fetched_at is not None
            and time.monotonic() - listing.fetched_at < upstream.settings.models_ttl_s
        )
        if fresh:
            return listing
        try:
            async with asyncio.timeout(upstream.settings.models_timeout_s):
                body = await upstream.get_json("models")
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise ValueError("its /models reply has no 'data' list")
            listing.models = [
                RemoteModel(
                    id=f"{upstream.name}/{item['id']}",
                    upstream=upstream.name,
                    model=str(item["id"]),
                    created=int(item.get("created") or 0),
                    owned_by=upstream.name,
                )
                for item in data
                if isinstance(item, dict) and item.get("id")
            ]
            listing.error = None
        except TimeoutError:
            limit = upstream.settings.models_timeout_s
            return self.failed(upstream, listing, f"did not list its models within {limit:g} s")
        except (SidecarError, ValueError, TypeError, KeyError) as e:
            return self.failed(upstream, listing, upstream.redact.text(str(e)))
        listing.fetched_at = time.monotonic()
        return listing

    def failed(self, upstream: Upstream, listing: Listing, error: str) -> Listing:
        listing.error = error
        log.warning("cannot list the models of upstream %s: %s", upstream.name, error)
        # asked again after at most ERROR_RETRY_S, not after the whole TTL
        ttl = upstream.settings.models_ttl_s
        listing.fetched_at = time.monotonic() - ttl + min(ttl, ERROR_RETRY_S)
        return listing

    def errors(self) -> list[dict[str, str]]:
        """The upstreams whose last listing failed, and why."""
        return [
            {"upstream": name, "error": listing.error}
            for name, listing in self.listings.items()
            if listing.error
        ]

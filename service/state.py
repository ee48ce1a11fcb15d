"""What the service holds for every request, made once at start-up: the ``Service`` object the routes and
``service.hot`` share, and the cache of checked API keys (its own module so the request handlers can name it
without importing the app that imports them)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from nurture.content import ContentSlot
from service.config import ServiceSettings
from service.limits import RateLimiter
from service.metrics import Metrics
from service.writer import GroupWriter
from stages.portfolio import Portfolio
from store.api_keys import KeyInfo, check_key
from store.lookups import ScoreLookup


class KeyCache:
    """Checked keys remembered for ``ttl`` seconds, so a request costs no store round-trip; a revocation
    therefore takes effect within ``ttl``. Entries are keyed by the key's hash, never the key."""

    def __init__(self, engine: Engine, ttl: float = 5.0) -> None:
        self.engine, self.ttl = engine, ttl
        self.entries: dict[str, tuple[KeyInfo | None, float]] = {}

    async def check(self, presented: str) -> KeyInfo | None:
        digest = hashlib.sha256(presented.encode()).hexdigest()
        now = time.monotonic()
        cached = self.entries.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = await run_in_threadpool(check_key, self.engine, presented)
        if len(self.entries) > 10_000:  # a flood of made-up keys must not grow memory without bound
            self.entries.clear()
        self.entries[digest] = (found, now + self.ttl)
        return found


@dataclass
class Service:
    """What every request needs, made once at start-up (settings are never read in a request)."""

    settings: ServiceSettings
    engine: Engine
    fresh_engine: Engine  # the same pool, reading one lead's frames through it (store.reader.row_reads)
    portfolio: Portfolio
    secrets: list[str]  # the unsubscribe secret, then the previous one during a rotation
    tracks: dict[str, list[str]]  # product line → its nurture tracks
    feedback_keys: dict[str, str]  # email provider → the key that verifies its webhooks
    tracking: bool  # the portfolio turns the open pixel and click redirects on
    content: dict[str, ContentSlot]  # web content slots (nurture.content)
    keys: KeyCache
    limiter: RateLimiter
    lookup: ScoreLookup  # the hot score read, one connection per process
    metrics: Metrics
    writer: GroupWriter

"""Delivery ledger in Redis: which commands were sent, and since when a lead said stop.

The outbox is at-least-once, so the mailer claims each command id before sending and confirms it
once the SMTP server took the mail (services/runtime/send_once.py). nurture records a stop marker
when a lead withdraws, unsubscribes, bounces or is erased, and the mailer withholds every command
created before it, including ones already queued.
"""

from __future__ import annotations

from datetime import datetime
from hashlib import blake2b

import redis.asyncio as aioredis

from services.runtime.send_once import SendClaims


class DeliveryLedger(SendClaims):
    def __init__(
        self, client: aioredis.Redis, *, sent_ttl: int, stop_ttl: int, claim_ttl: int = 120, prefix: str = ""
    ) -> None:
        self._prefix = f"leadpipe:nurture{prefix}"
        super().__init__(client, f"{self._prefix}:sent:", sent_ttl=sent_ttl, claim_ttl=claim_ttl)
        self._stop_ttl = stop_ttl

    async def mark_stopped(self, lead_id: str, at: datetime) -> None:
        """Remember the latest stop; never move it backwards."""
        key = self._stop_key(lead_id)
        current = await self._redis.get(key)
        value = max(at.timestamp(), float(current) if current else 0.0)
        await self._redis.set(key, repr(value), ex=self._stop_ttl)

    async def stopped_at(self, lead_id: str) -> float | None:
        value = await self._redis.get(self._stop_key(lead_id))
        return float(value) if value else None

    def _stop_key(self, lead_id: str) -> str:
        """Keyed by a digest: the marker outlives an erasure (it withholds queued mail), the id must not."""
        return f"{self._prefix}:stop:{blake2b(lead_id.encode(), digest_size=16).hexdigest()}"

"""Delivery ledger in Redis: which commands were sent, and since when a lead said stop.

The outbox is at-least-once, so the mailer claims each command id before sending (SET NX);
nurture records a stop marker when a lead withdraws, unsubscribes, bounces or is erased, and the
mailer withholds every command created before it, including ones already queued.
"""

from __future__ import annotations

from datetime import datetime

import redis.asyncio as aioredis

SENT = b"sent"
SENDING = b"sending"


class DeliveryLedger:
    def __init__(
        self, client: aioredis.Redis, *, sent_ttl: int, stop_ttl: int, claim_ttl: int = 120, prefix: str = ""
    ) -> None:
        self._redis = client
        self._sent_ttl, self._stop_ttl, self._claim_ttl = sent_ttl, stop_ttl, claim_ttl
        self._prefix = f"leadpipe:nurture{prefix}"

    async def claim(self, command_id: str) -> bool:
        """True when this caller may send `command_id` (nobody sent or is sending it)."""
        ok = await self._redis.set(self._sent_key(command_id), SENDING, nx=True, ex=self._claim_ttl)
        return bool(ok)

    async def confirm(self, command_id: str) -> None:
        await self._redis.set(self._sent_key(command_id), SENT, ex=self._sent_ttl)

    async def release(self, command_id: str) -> None:
        """Give the claim back after a failed attempt so a retry can send."""
        await self._redis.delete(self._sent_key(command_id))

    async def mark_stopped(self, lead_id: str, at: datetime) -> None:
        """Remember the latest stop; never move it backwards."""
        key = self._stop_key(lead_id)
        current = await self._redis.get(key)
        value = max(at.timestamp(), float(current) if current else 0.0)
        await self._redis.set(key, repr(value), ex=self._stop_ttl)

    async def stopped_at(self, lead_id: str) -> float | None:
        value = await self._redis.get(self._stop_key(lead_id))
        return float(value) if value else None

    async def close(self) -> None:
        await self._redis.aclose()

    def _sent_key(self, command_id: str) -> str:
        return f"{self._prefix}:sent:{command_id}"

    def _stop_key(self, lead_id: str) -> str:
        """Keyed by a digest: the marker outlives an erasure (it withholds queued mail), the id must not."""
        from hashlib import blake2b

        return f"{self._prefix}:stop:{blake2b(lead_id.encode(), digest_size=16).hexdigest()}"

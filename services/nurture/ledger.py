"""Delivery ledger in Redis: which commands were sent, and since when a lead said stop.

The outbox is at-least-once, so the mailer claims each command id before sending (SET NX, with a
lease naming this process). The mailer renews the lease while its attempt lasts (`renew`), so the
lease can be short: a claim left by a worker that died mid-send expires within one lease, and the
replayed command then sends. A crash never loses a mail, and the outbox waits at most one lease for
a dead worker's claim. Only a crash between the SMTP server's acceptance and `confirm` repeats one.
nurture records a stop marker when a lead withdraws, unsubscribes, bounces or is erased, and the
mailer withholds every command created before it, including ones already queued.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import redis.asyncio as aioredis

SENT = b"sent"
SENDING = b"sending:"
OWNER = uuid.uuid4().hex.encode()  # this process: its own claims are its to resume
# Extend a claim only while it is still this process's (a lapsed one may be another worker's now).
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"
)


class Claim(StrEnum):
    MINE = "mine"  # send it
    SENT = "sent"  # somebody sent it: a duplicate
    BUSY = "busy"  # another worker is sending it, or died sending it: wait for its lease to end


class DeliveryLedger:
    def __init__(
        self, client: aioredis.Redis, *, sent_ttl: int, stop_ttl: int, claim_ttl: int = 120, prefix: str = ""
    ) -> None:
        self._redis = client
        self._sent_ttl, self._stop_ttl, self._claim_ttl = sent_ttl, stop_ttl, claim_ttl
        self._prefix = f"leadpipe:nurture{prefix}"

    async def claim(self, command_id: str) -> Claim:
        """Whether this worker may send `command_id` now."""
        key = self._sent_key(command_id)
        if await self._redis.set(key, SENDING + OWNER, nx=True, ex=self._claim_ttl):
            return Claim.MINE
        current = await self._redis.get(key)
        if current == SENT:
            return Claim.SENT
        if current == SENDING + OWNER:
            return Claim.MINE
        return Claim.BUSY  # (or the lease ended just now: the next attempt takes it)

    async def renew(self, command_id: str) -> bool:
        """Extend this process's claim by a whole lease; False if it is no longer ours."""
        key = self._sent_key(command_id)
        renewed = await self._redis.eval(_RENEW, 1, key, SENDING + OWNER, self._claim_ttl)
        return bool(renewed)

    @property
    def lease_seconds(self) -> int:
        return self._claim_ttl

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

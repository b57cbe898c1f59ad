"""Redis-backed idempotency and rate limiting. Both fail open: Redis down must never lose a lead.

Idempotency is two-phase: `claim` sets the sender id to "pending" with `SET NX` and a short
expiry, `complete` overwrites it with the broker acknowledgement for the whole window, and
`release` deletes it when the publish failed. So a 503 never swallows the sender's retry, a
crash mid-publish frees the id after the short expiry, and two concurrent copies are not
both published. When Redis does not answer, capture publishes anyway and counts it: consumers
dedupe by `event_id`, which capture derives deterministically from the sender's id.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import StrEnum

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

_PENDING = b"pending"


class ClaimState(StrEnum):
    NEW = "new"
    DONE = "done"
    IN_FLIGHT = "in_flight"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Claim:
    state: ClaimState
    key: str
    previous: dict[str, object] | None = None


class Deduplicator:
    def __init__(
        self, redis: Redis, *, window_seconds: int, pending_seconds: int, namespace: str = ""
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._window = window_seconds
        self._pending = pending_seconds

    def key(self, sender_id: str) -> str:
        """Namespaced by the topic suffix: pipelines sharing one Redis do not see each other's ids."""
        return f"leadpipe:capture{self._namespace}:seen:{sender_id}"

    async def claim(self, sender_id: str) -> Claim:
        key = self.key(sender_id)
        try:
            if await self._redis.set(key, _PENDING, nx=True, ex=self._pending):
                return Claim(ClaimState.NEW, key)
            value = await self._redis.get(key)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("redis unavailable for idempotency, publishing without it: %s", exc)
            return Claim(ClaimState.UNAVAILABLE, key)
        if value is None:  # expired between SET and GET: treat as new next time
            return Claim(ClaimState.IN_FLIGHT, key)
        if value == _PENDING:
            return Claim(ClaimState.IN_FLIGHT, key)
        try:
            previous = json.loads(value)
        except ValueError:
            previous = {}
        return Claim(ClaimState.DONE, key, previous if isinstance(previous, dict) else {})

    async def complete(self, claim: Claim, answer: dict[str, object]) -> None:
        try:
            await self._redis.set(claim.key, json.dumps(answer), ex=self._window)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not mark %s as published: %s", claim.key, exc)

    async def release(self, claim: Claim) -> None:
        if claim.state is not ClaimState.NEW:
            return
        try:
            await self._redis.delete(claim.key)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not release %s; it expires by itself: %s", claim.key, exc)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: int
    checked: bool = True


class RateLimiter:
    """Fixed one-minute windows per client: SET NX EX + INCR in one transaction (Redis 6 compatible)."""

    def __init__(self, redis: Redis, *, per_minute: int, namespace: str = "") -> None:
        self._redis = redis
        self._limit = per_minute
        self._namespace = namespace

    async def hit(self, client: str) -> RateDecision:
        key = f"leadpipe:capture{self._namespace}:rate:{client}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(key, 0, nx=True, ex=60)
                pipe.incr(key)
                pipe.ttl(key)
                _, count, ttl = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("redis unavailable for rate limiting, allowing: %s", exc)
            return RateDecision(True, 0, checked=False)
        if int(count) > self._limit:
            return RateDecision(False, max(int(ttl), 1))
        return RateDecision(True, 0)

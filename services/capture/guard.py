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
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.capture.redis_batch import SetMany

log = logging.getLogger(__name__)

_PENDING = b"pending"
_NEW = 1  # what `_CLAIM` answers for an id it claimed (a taken id: its value, never an integer)

# A batch's claims as one script: a command per id in a pipeline cost redis-py's packing and a timed
# reply read each (services/capture/redis_batch.py). Its answer per id: 1 claimed, else the id's value.
_CLAIM = """
local found = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[1], 'NX', 'EX', ARGV[2]) then
    found[i] = 1
  else
    found[i] = redis.call('GET', key) or 0
  end
end
return found
"""


def seen_key(namespace: str, sender_id: str) -> str:
    """A sender id's idempotency key, namespaced by the topic suffix: pipelines sharing one Redis do
    not see each other's ids."""
    return f"leadpipe:capture{namespace}:seen:{sender_id}"


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
        self._claim = redis.register_script(_CLAIM)
        self._set_many = SetMany(redis)

    def key(self, sender_id: str) -> str:
        return seen_key(self._namespace, sender_id)

    async def claim(self, sender_ids: Sequence[str]) -> list[Claim]:
        """One claim per sender id, in order, in one round trip (a batch's events share it): `SET NX`
        for each id and, where it is taken, its value. An id given twice is claimed once; its
        second claim finds it in flight."""
        keys = [self.key(sender_id) for sender_id in sender_ids]
        if not keys:
            return []
        try:
            found: list[int | bytes] = await self._claim(keys=keys, args=[_PENDING, self._pending])
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("redis unavailable for idempotency, publishing without it: %s", exc)
            return [Claim(ClaimState.UNAVAILABLE, key) for key in keys]
        return [_claimed(key, value) for key, value in zip(keys, found, strict=True)]

    async def complete(
        self, answers: Sequence[tuple[Claim, dict[str, object]]], window_seconds: int | None = None
    ) -> None:
        """Mark each claim published, with the answer a repeat gets, in one round trip; remembered for
        `window_seconds` when given (a form's content key), else for the dedupe window."""
        if not answers:
            return
        marks = [(claim.key, orjson.dumps(answer)) for claim, answer in answers]
        try:
            await self._set_many(marks, window_seconds or self._window)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not mark %d event(s) as published: %s", len(answers), exc)

    async def release(self, claims: Sequence[Claim]) -> None:
        """Free the new claims whose publish failed, so the sender's retry is not taken for a repeat."""
        keys = [claim.key for claim in claims if claim.state is ClaimState.NEW]
        if not keys:
            return
        try:
            await self._redis.delete(*keys)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not release %d claim(s); they expire by themselves: %s", len(keys), exc)


def _claimed(key: str, found: int | bytes) -> Claim:
    """What `_CLAIM` found for one id: claimed now, or held by someone (its value)."""
    if found == _NEW:
        return Claim(ClaimState.NEW, key)
    return _existing(key, found if isinstance(found, bytes) else None)


def _existing(key: str, value: bytes | None) -> Claim:
    """The claim of an id someone holds: in flight while pending, else done with its answer."""
    # None: not there when read (only defensively: the claim script reads in the step of its SET)
    if value is None or value == _PENDING:
        return Claim(ClaimState.IN_FLIGHT, key)
    try:
        previous = json.loads(value)
    except ValueError:
        previous = {}
    return Claim(ClaimState.DONE, key, previous if isinstance(previous, dict) else {})


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

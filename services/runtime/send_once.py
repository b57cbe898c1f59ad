"""Send each message once from an at-least-once topic: a Redis claim per message id, then confirm.

The consumer may see a record twice (a replay after a crash or a rebalance), so a sender claims the
record's id before sending (SET NX, with a lease naming this process) and confirms it when the
receiving server has taken the message. The lease is renewed while an attempt lasts (`held`), so it
can be short: a claim left by a worker that died mid-send expires within one lease, and the replay
then sends. A crash never loses a message; only a crash between the server's acceptance and the
confirmation repeats one. Used by nurture's mailer and route's SLA notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import StrEnum
from functools import partial

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.runtime.cancellation import cancel_and_wait
from services.runtime.redis_retry import until_redis_answers

log = logging.getLogger(__name__)

SENT = b"sent"
SENDING = b"sending:"
OWNER = uuid.uuid4().hex.encode()  # this process: its own claims are its to resume
BUSY_POLL_SECONDS = 0.5  # how often a message another worker holds is looked at again
FIRST_RETRY_SECONDS = 0.5
# Extend a claim only while it is still this process's (a lapsed one may be another worker's now).
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"
)


def lease_problem(name: str, lease_seconds: float, redis_timeout: float) -> str | None:
    """Why a claim lease is too short, or None: it is renewed every third of itself, and a renewal
    may take `redis_timeout` before it lands (for the settings that set both)."""
    if lease_seconds / 3 + redis_timeout >= lease_seconds:
        return f"{name} must exceed 1.5 x redis_timeout (renewed every third)"
    return None


class Claim(StrEnum):
    MINE = "mine"  # send it
    SENT = "sent"  # somebody sent it: a duplicate
    BUSY = "busy"  # another worker is sending it, or died sending it: wait for its lease to end


class Delivery(StrEnum):
    SENT = "sent"
    DUPLICATE = "duplicate"
    STOPPED = "stopped"  # withheld: the caller's check said not to send any more
    REFUSED = "refused"  # the server will never take it (`permanent`): not retried, the caller keeps it


Accepted = Callable[[], Awaitable[None]]


class SendClaims:
    """Which message ids were sent, and which one a worker is sending now (`{key_prefix}{id}`)."""

    def __init__(
        self, client: aioredis.Redis, key_prefix: str, *, sent_ttl: int, claim_ttl: int = 120
    ) -> None:
        self._redis = client
        self._key_prefix = key_prefix
        self._sent_ttl, self._claim_ttl = sent_ttl, claim_ttl

    async def claim(self, message_id: str) -> Claim:
        """Whether this worker may send `message_id` now."""
        key = self._key(message_id)
        if await self._redis.set(key, SENDING + OWNER, nx=True, ex=self._claim_ttl):
            return Claim.MINE
        current = await self._redis.get(key)
        if current == SENT:
            return Claim.SENT
        if current == SENDING + OWNER:
            return Claim.MINE
        return Claim.BUSY  # (or the lease ended just now: the next attempt takes it)

    async def renew(self, message_id: str) -> bool:
        """Extend this process's claim by a whole lease; False if it is no longer ours."""
        renewed = await self._redis.eval(_RENEW, 1, self._key(message_id), SENDING + OWNER, self._claim_ttl)
        return bool(renewed)

    @property
    def lease_seconds(self) -> int:
        return self._claim_ttl

    async def confirm(self, message_id: str) -> None:
        await self._redis.set(self._key(message_id), SENT, ex=self._sent_ttl)

    async def release(self, message_id: str) -> None:
        """Give the claim back after a failed attempt so a retry can send."""
        await self._redis.delete(self._key(message_id))

    async def close(self) -> None:
        await self._redis.aclose()

    @contextlib.asynccontextmanager
    async def held(self, message_id: str) -> AsyncIterator[None]:
        """Renew the claim every third of a lease while an attempt runs: the lease only has to
        outlast a crash, not the slowest server."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self._claim_ttl / 3)
                try:
                    if not await self.renew(message_id):
                        log.warning("lost the claim on %s mid-send; another worker may send it", message_id)
                        return
                except (RedisError, OSError) as exc:  # the lease may lapse: at worst a second message
                    log.warning("could not renew the claim on %s (%s)", message_id, type(exc).__name__)

        renewing = asyncio.create_task(renew())
        try:
            yield
        finally:
            await cancel_and_wait(renewing)

    def _key(self, message_id: str) -> str:
        return f"{self._key_prefix}{message_id}"


async def send_once(
    claims: SendClaims,
    message_id: str,
    send: Callable[[Accepted], Awaitable[None]],
    *,
    retry_on: tuple[type[BaseException], ...],
    retry_max_seconds: float,
    stopped: Callable[[], Awaitable[bool]] | None = None,
    failed: Callable[[BaseException], None] | None = None,
    permanent: Callable[[BaseException], bool] | None = None,
) -> Delivery:
    """Send `message_id` unless it was sent already, retrying `retry_on` errors with a doubling
    back-off until the server takes it; the topic behind waits meanwhile and keeps its order.

    `send(accepted)` must await `accepted` as soon as the server has taken the message. `stopped`,
    asked before every attempt, withholds the message (nurture: the lead said stop meanwhile).
    `permanent` says which failures no retry can mend (an address the server refuses for good):
    retried, one would hold everything behind it forever. The message is marked done, so a replay
    does not try it again, and REFUSED tells the caller to keep it (a dead letter)."""
    delay = FIRST_RETRY_SECONDS
    waiting = False
    while True:
        if stopped is not None and await stopped():
            return Delivery.STOPPED
        claim = await until_redis_answers(partial(claims.claim, message_id), "delivery claim")
        if claim is Claim.SENT:
            return Delivery.DUPLICATE
        if claim is Claim.BUSY:  # wait for the other worker to confirm, or for its lease to end
            if not waiting:
                waiting = True
                log.info("%s is claimed by another worker; waiting for it", message_id)
            await asyncio.sleep(BUSY_POLL_SECONDS)
            continue
        confirmed = False

        async def accepted() -> None:
            nonlocal confirmed
            await until_redis_answers(partial(claims.confirm, message_id), "delivery confirmation")
            confirmed = True

        try:
            async with claims.held(message_id):
                await send(accepted)
        except retry_on as exc:
            if confirmed:  # taken by the server; only the goodbye failed
                log.info("the server took %s; only the goodbye failed (%s)", message_id, type(exc).__name__)
                return Delivery.SENT
            if failed is not None:
                failed(exc)
            if permanent is not None and permanent(exc):
                await until_redis_answers(partial(claims.confirm, message_id), "delivery refusal")
                log.warning("the server refused %s for good (%s): not retried", message_id, exc)
                return Delivery.REFUSED
            await until_redis_answers(partial(claims.release, message_id), "delivery claim release")
            log.warning("sending %s failed (%s); retrying in %.1fs", message_id, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, retry_max_seconds)
            continue
        return Delivery.SENT

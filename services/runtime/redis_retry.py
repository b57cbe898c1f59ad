"""Hold a partition while Redis is away instead of dropping the record being handled.

Why: a worker that lets a Redis error escape crashes its agent, and faust restarts the agent past
the record it was handling: at-least-once becomes at-most-once. Every Redis call on a consumer's
path goes through `until_redis_answers`, so the record waits for Redis and nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY = 0.2
MAX_DELAY = 5.0


async def until_redis_answers(call: Callable[[], Awaitable[T]], what: str) -> T:
    """`call()`, retried with capped exponential back-off for as long as Redis is unreachable."""
    delay = FIRST_DELAY
    while True:
        try:
            return await call()
        except (RedisError, OSError) as exc:
            log.warning("%s: Redis unavailable (%s); retrying in %.1fs", what, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)

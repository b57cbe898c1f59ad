"""Hold a partition while Redis is away instead of dropping the record being handled.

Why: a worker that lets a Redis error escape crashes its agent, and faust restarts the agent past
the record it was handling: at-least-once becomes at-most-once. Every Redis call on a consumer's
path goes through `until_redis_answers`, so the record waits for Redis and nothing is skipped.

Only an outage is waited out. An error Redis answers about the command itself (a script failing on
the record's data) comes back the same however often it is sent: retried, one such record held its
partition for ever. It is raised as `RedisRefused`, for the caller to dead-letter the record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import (
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY = 0.2
MAX_DELAY = 5.0

PASSING_CODES = frozenset(
    {"BUSY", "LOADING", "OOM", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "NOREPLICAS", "MISCONF"}
)
"""Error codes of a Redis that cannot serve now (a script running, loading, full, a replica, a
failover, a failing disk): the same command succeeds once it can."""
PASSING_ERRORS = (ClusterDownError, OutOfMemoryError, ReadOnlyError, TryAgainError)
"""redis-py's own classes for some of them (older versions strip their code from the text)."""


class RedisRefused(Exception):
    """Redis answered the command with an error about the command itself: retrying cannot help."""

    def __init__(self, what: str, error: RedisError) -> None:
        super().__init__(f"{what}: Redis refused it: {error}")
        self.error = error


def is_outage(exc: BaseException) -> bool:
    """Would the same command succeed later? Not reachable, timed out, or an answer of `PASSING_CODES`."""
    if isinstance(exc, (OSError, RedisConnectionError, RedisTimeoutError)):
        return True
    if isinstance(exc, ResponseError):
        return isinstance(exc, PASSING_ERRORS) or _code(exc) in PASSING_CODES
    return False


def _code(exc: ResponseError) -> str | None:
    """The answer's error code: redis-py keeps it (`status_code`); older versions leave it in the
    text of the codes they map to no class of their own."""
    code = getattr(exc, "status_code", None)
    if code:
        return str(code)
    first = str(exc).split(" ", 1)[0]
    return first if first.isupper() else None


async def until_redis_answers(call: Callable[[], Awaitable[T]], what: str) -> T:
    """`call()`, retried with capped exponential back-off for as long as Redis is unreachable;
    `RedisRefused` when Redis answers that the command itself is wrong."""
    delay = FIRST_DELAY
    while True:
        try:
            return await call()
        except (RedisError, OSError) as exc:
            if not is_outage(exc):
                assert isinstance(exc, RedisError)
                raise RedisRefused(what, exc) from exc
            log.warning("%s: Redis unavailable (%s); retrying in %.1fs", what, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)

"""Claim the due members of a Redis sorted set scored by due time, each for a lease.

Why: a worker that dies while handling a claimed member must not lose it. A claim moves the member's
score out by the lease instead of removing it, so a member its claimer never finished comes due again
and another worker (or the restarted one) takes it. Route's SLA clocks and capture's contact fetches
share it.
"""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import Redis

# KEYS: the sorted set. ARGV: now, lease, limit (scores and lease in the set's own unit).
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), member)
end
return due
"""


class DueClaims:
    """`await claims(key, now, lease, limit)`: up to `limit` members scored at or before `now`, each
    moved to `now + lease` in the same step, so two workers never claim one member at once."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_CLAIM)

    async def __call__(self, key: str, now: float, lease: float, limit: int) -> list[bytes]:
        return cast(list[Any], await self._script(keys=[key], args=[now, lease, limit]))

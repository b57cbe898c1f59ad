"""Many Redis keys written in one round trip, each with the same expiry.

redis-py's pipeline packs every command and reads every reply under a timeout of its own: about
40 µs of capture's CPU per command (docs/performance.md, eighteenth pass). A script does the loop
inside Redis and answers once. Its keys must share a slot on a Redis Cluster; capture talks to one
Redis (or a Sentinel-managed primary), where they need not.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

_SET_MANY = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
end
return #KEYS
"""


class SetMany:
    """`SET key value EX seconds` for many keys at once (the script loads again after a restart)."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_SET_MANY)

    async def __call__(self, items: Sequence[tuple[str, bytes | str]], expire_seconds: int) -> None:
        if items:
            keys = [key for key, _ in items]
            await self._script(keys=keys, args=[expire_seconds, *(value for _, value in items)])

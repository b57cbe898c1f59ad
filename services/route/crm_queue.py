"""CRM webhook deliveries waiting in Redis, so a restart or a long CRM outage loses none.

Why a queue and not retries in the consumer: one team's CRM that is down for an hour must not hold
the other teams' deliveries behind it, and a delivery waiting to be tried again must survive its
worker. Each job sits in its lead's hash (`crm:jobs:<lead>`, field: hand-off id), so erasing a lead
removes its deliveries in one step (store.py's erase script). Each team has its own due set, scored
by due time and claimed for a lease, as services/runtime/due_claims.py claims: any number of route
workers share it, a job whose claimer died comes due again, and a team whose CRM hangs fills only its
own. A claim reads the jobs and the count still waiting in the same round trip, and a fetch of
hand-offs is queued in one: a post costs route two round trips to Redis, its claim and its end. A
delivered or given-up hand-off's id is kept for `done_ttl` so that a replay of leads.handoffs does
not post it again. Given-up jobs stay in the failed set for `leadpipe requeue-crm` for
`keep_failed_seconds`.

Keys, under route's prefix: `crm:jobs:<lead>` (hash), `crm:due:<team>` and `crm:failed` (sorted sets
of `<hand-off id>:<lead id>`), `crm:done:<hand-off id>` (string with expiry).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from services.route.crm import CrmJob
from services.runtime.redis_client import text_of

# KEYS: the lead's jobs, due set, done marker, the lead's erasure guard. ARGV: hand-off id, job JSON,
# now, member, the hand-off's time in ms. A hand-off made before its lead's erasure (read late: a lag,
# a replay) is not queued: the erasure removed the lead's deliveries, and must not see them return.
_ADD = """
local erased = redis.call('GET', KEYS[4])
if erased and tonumber(ARGV[5]) <= tonumber(erased) then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
  return 1
end
return 0
"""

# KEYS: the team's due set. ARGV: now, lease, limit, the jobs keys' prefix. Each due job is moved out
# by the lease and returned; a member whose job is gone (erased) leaves the set. Returns the jobs and
# how many members the set keeps.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local jobs = {}
for _, member in ipairs(due) do
  local hid, lead = string.match(member, '^([^:]*):(.*)$')
  local job = redis.call('HGET', ARGV[4] .. lead, hid)
  if job then
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), member)
    table.insert(jobs, job)
  else
    redis.call('ZREM', KEYS[1], member)
  end
end
return {redis.call('ZCARD', KEYS[1]), jobs}
"""

# KEYS: the team's due set. ARGV: limit, the jobs keys' prefix. The first `limit` members, due or
# not (leased, waiting for a retry), without claiming them; a member whose job is gone leaves the set.
_WAITING = """
local jobs = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)) do
  local hid, lead = string.match(member, '^([^:]*):(.*)$')
  local job = redis.call('HGET', ARGV[2] .. lead, hid)
  if job then table.insert(jobs, job) else redis.call('ZREM', KEYS[1], member) end
end
return jobs
"""

# KEYS: the lead's jobs, due set, done marker. ARGV: hand-off id, member, done TTL.
_DONE = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], '1', 'EX', ARGV[3])
return 1
"""

# KEYS: the lead's jobs, due set. ARGV: hand-off id, job JSON, due at, member. A job erased while it
# was being tried is not written back.
_RETRY = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[4])
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"""

# KEYS: the lead's jobs, due set, failed set, done marker. ARGV: hand-off id, job JSON, now, member,
# done TTL, the jobs keys' prefix, oldest failure kept. Failures older than that go, with their jobs.
_GIVE_UP = """
redis.call('ZREM', KEYS[2], ARGV[4])
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
redis.call('SET', KEYS[4], '1', 'EX', ARGV[5])
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[7])) do
  local hid, lead = string.match(member, '^([^:]*):(.*)$')
  redis.call('HDEL', ARGV[6] .. lead, hid)
  redis.call('ZREM', KEYS[3], member)
end
return 1
"""

# KEYS: failed set, the lead's jobs, due set, done marker. ARGV: member, hand-off id, job JSON, now.
# Moves one given-up job back, once however many requeue at the same time.
_REQUEUE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('DEL', KEYS[4])
return 1
"""


@dataclass(frozen=True)
class CrmKeys:
    """The deliveries' keys under route's prefix, in one place for the queue and for the store's
    erase and export (store.py), which remove and list a lead's deliveries."""

    prefix: str

    @property
    def jobs_prefix(self) -> str:
        return f"{self.prefix}crm:jobs:"

    def jobs(self, lead_id: str) -> str:
        return self.jobs_prefix + lead_id

    def erased(self, lead_id: str) -> str:
        """The lead's erasure guard, which the store's erase script writes (store.py, `_ERASE`, whose
        `redis.sha1hex` is this digest)."""
        return f"{self.prefix}erased:{hashlib.sha1(lead_id.encode()).hexdigest()}"

    @property
    def due_prefix(self) -> str:
        return f"{self.prefix}crm:due:"

    def due(self, team: str) -> str:
        return self.due_prefix + team

    @property
    def failed(self) -> str:
        return f"{self.prefix}crm:failed"

    def done(self, handoff_id: str) -> str:
        return f"{self.prefix}crm:done:{handoff_id}"


@dataclass(frozen=True)
class Claimed:
    """A claim's jobs, and how many of the team's deliveries wait (the claimed ones among them)."""

    jobs: list[CrmJob]
    waiting: int


def _glob_escape(text: str) -> str:
    """`text` matched literally in a Redis SCAN pattern."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


def member(job: CrmJob) -> str:
    """A job's entry in the due and failed sets; hand-off ids are hex, so the first `:` splits."""
    return f"{job.handoff_id}:{job.lead_id}"


class CrmQueue:
    def __init__(
        self, redis: Redis, prefix: str, *, done_ttl: int, keep_failed_seconds: float = 14 * 24 * 3600
    ) -> None:
        self._redis, self.keys = redis, CrmKeys(prefix)
        self._done_ttl, self._keep_failed = done_ttl, keep_failed_seconds
        self._add = redis.register_script(_ADD)
        self._done = redis.register_script(_DONE)
        self._retry = redis.register_script(_RETRY)
        self._give_up = redis.register_script(_GIVE_UP)
        self._requeue = redis.register_script(_REQUEUE)
        self._claim = redis.register_script(_CLAIM)
        self._waiting = redis.register_script(_WAITING)

    async def add(self, job: CrmJob, now: float | None = None) -> bool:
        """Queue `job`, due at once; False when it is queued, delivered or given up already."""
        (added,) = await self.add_many([job], now)
        return added

    async def add_many(self, jobs: Sequence[CrmJob], now: float | None = None) -> list[bool]:
        """Queue each of `jobs` as `add` does, in one round trip; whether each was queued."""
        now = time.time() if now is None else now
        async with self._redis.pipeline(transaction=False) as pipe:
            for job in jobs:
                keys = [self.keys.jobs(job.lead_id), self.keys.due(job.team), self.keys.done(job.handoff_id)]
                keys.append(self.keys.erased(job.lead_id))
                args: list[str | float] = [job.handoff_id, job.model_dump_json(), now, member(job)]
                args.append(int(job.handed_off_at * 1000))
                await self._add(keys=keys, args=args, client=pipe)
            added: list[Any] = await pipe.execute()
        return [bool(result) for result in added]

    async def claim(self, team: str, now: float, lease_seconds: float, limit: int) -> Claimed:
        """The team's due jobs, each out of the other workers' reach for `lease_seconds`."""
        args: list[str | float] = [now, lease_seconds, limit, self.keys.jobs_prefix]
        waiting, stored = cast(list[Any], await self._claim(keys=[self.keys.due(team)], args=args))
        return Claimed([CrmJob.model_validate_json(raw) for raw in stored], int(waiting))

    async def done(self, job: CrmJob) -> None:
        keys = [self.keys.jobs(job.lead_id), self.keys.due(job.team), self.keys.done(job.handoff_id)]
        await self._done(keys=keys, args=[job.handoff_id, member(job), self._done_ttl])

    async def retry(self, job: CrmJob, at: float) -> None:
        """Store the job as it is now (attempts, error) and make it due again at `at`."""
        keys = [self.keys.jobs(job.lead_id), self.keys.due(job.team)]
        await self._retry(keys=keys, args=[job.handoff_id, job.model_dump_json(), at, member(job)])

    async def give_up(self, job: CrmJob, now: float) -> None:
        """Out of the due set into the failed set, where `requeue` finds it."""
        keys = [
            self.keys.jobs(job.lead_id),
            self.keys.due(job.team),
            self.keys.failed,
            self.keys.done(job.handoff_id),
        ]
        args: list[str | float] = [
            job.handoff_id,
            job.model_dump_json(),
            now,
            member(job),
            self._done_ttl,
            self.keys.jobs_prefix,
            now - self._keep_failed,
        ]
        await self._give_up(keys=keys, args=args)

    async def queued_teams(self) -> set[str]:
        """The teams with deliveries in a due set, configured or not (a SCAN: for start-up, not a loop)."""
        pattern = _glob_escape(self.keys.due_prefix) + "*"
        start = len(self.keys.due_prefix)
        return {text_of(key)[start:] async for key in self._redis.scan_iter(match=pattern, count=1000)}

    async def waiting_jobs(self, team: str, limit: int) -> list[CrmJob]:
        """Up to `limit` of the team's queued jobs, due or not, unclaimed (`give_up` takes them out)."""
        stored = cast(
            list[Any], await self._waiting(keys=[self.keys.due(team)], args=[limit, self.keys.jobs_prefix])
        )
        return [CrmJob.model_validate_json(raw) for raw in stored]

    async def waiting(self, team: str) -> int:
        return int(await self._redis.zcard(self.keys.due(team)))

    async def failed(self) -> list[CrmJob]:
        """Given-up jobs, oldest first."""
        entries = cast(list[bytes], await self._redis.zrange(self.keys.failed, 0, -1))
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                handoff_id, _, lead_id = entry.decode().partition(":")
                pipe.hget(self.keys.jobs(lead_id), handoff_id)
            stored: list[Any] = await pipe.execute()
        return [CrmJob.model_validate_json(raw) for raw in stored if raw is not None]

    async def requeue(self, team: str | None = None, now: float | None = None) -> list[CrmJob]:
        """Given-up jobs (of one team, or all) due again at once with a full set of tries, once the
        CRM's side is mended. Returns the jobs moved."""
        return await self.requeue_jobs([job for job in await self.failed() if team in (None, job.team)], now)

    async def requeue_jobs(self, jobs: list[CrmJob], now: float | None = None) -> list[CrmJob]:
        """`requeue` for given-up jobs the caller read (`failed`) and chose; those moved since stay."""
        now = time.time() if now is None else now
        moved: list[CrmJob] = []
        for job in jobs:
            fresh = job.model_copy(update={"attempts": 0})
            keys = [
                self.keys.failed,
                self.keys.jobs(job.lead_id),
                self.keys.due(job.team),
                self.keys.done(job.handoff_id),
            ]
            args: list[str | float] = [member(job), job.handoff_id, fresh.model_dump_json(), now]
            if await self._requeue(keys=keys, args=args):
                moved.append(fresh)
        return moved

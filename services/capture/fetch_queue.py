"""Contact fetches waiting in Redis, so a capture restart does not lose them.

Why: Meta and LinkedIn send a lead's id, not its answers; capture publishes the id at once and
fetches the answers from the platform's API afterwards. Held in memory, a fetch that was waiting to
retry died with its process, and the lead stayed without a contact. Here each fetch is a job in a
hash, with its due time in a sorted set; a capture claims due jobs for a lease
(`services/runtime/due_claims.py`), so a job whose claimer died comes due again, and any number of
captures share the queue. A job holds platform ids only, no personal data. A drop (the lead deleted
on the platform) leaves a tombstone key with a TTL, so the same lead is not queued again by a
webhook the platform delivers late or again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal, cast

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError
from redis.asyncio import Redis

from services.runtime.due_claims import DueClaims

log = logging.getLogger(__name__)

Platform = Literal["meta", "linkedin"]

DROPPED_TTL_SECONDS = 7 * 24 * 3600  # how long a dropped job id stays unqueueable (CaptureSettings)

# A failed entry's job id, as `job_id` makes it.
_ENTRY_ID = """
local function entry_id(entry)
  local job = cjson.decode(entry)
  return job.platform .. ':' .. job.ref
end
"""

# KEYS: jobs hash, due set, the job's tombstone. ARGV: job id, job JSON, now. A job already waiting or
# in flight is kept; a job dropped lately (a CREATED delivered again after the DELETED) is not queued.
_ADD = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  return 1
end
return 0
"""

# KEYS: jobs hash, due set. ARGV: job id, job JSON, due time. A job dropped meanwhile stays dropped.
_RETRY = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

# KEYS: jobs hash, due set, failed set, failed index. ARGV: job id, job JSON, now, failed entries kept.
# A job dropped meanwhile is not kept for a look either. A lead given up before keeps its latest entry
# only; the entries trimmed (usually one) leave the index with them.
_GIVE_UP = (
    _ENTRY_ID
    + """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
local previous = redis.call('HGET', KEYS[4], ARGV[1])
if previous then redis.call('ZREM', KEYS[3], previous) end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[4])
if over > 0 then
  for _, entry in ipairs(redis.call('ZRANGE', KEYS[3], 0, over - 1)) do
    local id = entry_id(entry)
    if redis.call('HGET', KEYS[4], id) == entry then redis.call('HDEL', KEYS[4], id) end
  end
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, over - 1)
end
return 1
"""
)

# KEYS: jobs hash, due set, failed set, failed index, the job's tombstone. ARGV: job id, tombstone TTL
# in seconds. A lookup in the index; the failed set is scanned only while it holds entries the index
# lacks (see `FetchQueue.drop`), which indexes them all, a lead's older entries going.
_DROP = (
    _ENTRY_ID
    + """
local dropped = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[5], '1', 'EX', ARGV[2])
if redis.call('HLEN', KEYS[4]) ~= redis.call('ZCARD', KEYS[3]) then
  redis.call('DEL', KEYS[4])
  for _, entry in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    local id = entry_id(entry)
    local previous = redis.call('HGET', KEYS[4], id)
    if previous then
      redis.call('ZREM', KEYS[3], previous)
      if id == ARGV[1] then dropped = dropped + 1 end
    end
    redis.call('HSET', KEYS[4], id, entry)
  end
end
local entry = redis.call('HGET', KEYS[4], ARGV[1])
if entry then
  redis.call('HDEL', KEYS[4], ARGV[1])
  dropped = dropped + redis.call('ZREM', KEYS[3], entry)
end
return dropped
"""
)

# KEYS: failed set, jobs hash, due set, failed index, the job's tombstone. ARGV: failed entry, job id,
# job JSON, now. Moves one given-up job back into the queue, once however many requeue at the same
# time; a job queued again since (a repeated webhook) is kept as it is, and a dropped one stays out.
_REQUEUE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[4], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[4], ARGV[2]) end
if redis.call('EXISTS', KEYS[5]) == 1 then return 0 end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 1 then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
end
return 1
"""


def job_id(platform: Platform, ref: str) -> str:
    return f"{platform}:{ref}"


class FetchJob(BaseModel):
    """One lead's contact to fetch: `lead` is the webhook's own record of it (ids only)."""

    model_config = ConfigDict(frozen=True)

    platform: Platform
    ref: str = Field(description="The platform's lead id: Meta's leadgen_id, LinkedIn's response URN.")
    lead: dict[str, JsonValue]
    attempts: int = Field(0, ge=0, description="Fetches tried so far.")
    queued_at: float
    last_error: str | None = None

    @property
    def id(self) -> str:
        return job_id(self.platform, self.ref)

    def failed(self, error: str) -> FetchJob:
        return self.model_copy(update={"attempts": self.attempts + 1, "last_error": error[:500]})


class FetchQueue:
    """The jobs of one pipeline (keys namespaced by the topic suffix, as capture's other keys)."""

    def __init__(
        self,
        redis: Redis,
        namespace: str = "",
        keep_failed: int = 10_000,
        on_set_aside: Callable[[str], None] = lambda job_id: None,
    ) -> None:
        """`on_set_aside(job id)`: told of each job `claim` could not read and set aside."""
        prefix = f"leadpipe:capture{namespace}:fetch:"
        self.jobs_key, self.due_key, self.failed_key = prefix + "jobs", prefix + "due", prefix + "failed"
        self.unreadable_key = prefix + "unreadable"  # job id -> the job as stored, for someone to look at
        self._on_set_aside = on_set_aside
        self.failed_index_key = prefix + "failed_ids"  # job id -> its entry in the failed set
        self._dropped_prefix = prefix + "dropped:"
        self._redis = redis
        self._keep_failed = keep_failed
        self._add = redis.register_script(_ADD)
        self._give_up = redis.register_script(_GIVE_UP)
        self._retry = redis.register_script(_RETRY)
        self._drop = redis.register_script(_DROP)
        self._requeue = redis.register_script(_REQUEUE)
        self._claim = DueClaims(redis)

    async def add(self, job: FetchJob, now: float | None = None) -> bool:
        """Queue `job`, due at once; False when the same lead's fetch is queued already, or was dropped
        within its tombstone's TTL (the platform deleted the lead: a late CREATED must not fetch it)."""
        now = time.time() if now is None else now
        keys = [self.jobs_key, self.due_key, self.dropped_key(job.id)]
        return bool(await self._add(keys=keys, args=[job.id, job.model_dump_json(), now]))

    def dropped_key(self, job_id: str) -> str:
        """The tombstone `drop` leaves: while it lives, the job cannot be queued again."""
        return self._dropped_prefix + job_id

    async def claim(self, now: float, lease_seconds: float, limit: int) -> list[FetchJob]:
        """Due jobs, each out of the others' reach for `lease_seconds`. A job that cannot be read (an
        older or newer capture's shape, a hand edit) is set aside under `unreadable_key`, logged and
        reported (`on_set_aside`): raised, it failed every round and no fetch was made any more."""
        ids = await self._claim(self.due_key, now, lease_seconds, limit)
        if not ids:
            return []
        stored = await self._redis.hmget(self.jobs_key, ids)
        orphans = [job_id for job_id, raw in zip(ids, stored, strict=True) if raw is None]
        if orphans:  # finished by another capture after this one's claim read the set
            await self._redis.zrem(self.due_key, *orphans)
        jobs: list[FetchJob] = []
        for job_id, raw in zip(ids, stored, strict=True):
            if raw is None:
                continue
            try:
                jobs.append(FetchJob.model_validate_json(raw))
            except ValidationError as exc:
                await self._set_aside(job_id.decode() if isinstance(job_id, bytes) else str(job_id), raw, exc)
        return jobs

    async def _set_aside(self, job_id: str, raw: bytes | str, exc: ValidationError) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.unreadable_key, job_id, raw)
            pipe.hdel(self.jobs_key, job_id)
            pipe.zrem(self.due_key, job_id)
            await pipe.execute()
        log.error("contact fetch %s cannot be read, set aside in %s: %s", job_id, self.unreadable_key, exc)
        self._on_set_aside(job_id)

    async def done(self, job: FetchJob) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.jobs_key, job.id)
            pipe.zrem(self.due_key, job.id)
            await pipe.execute()

    async def holds(self, job: FetchJob) -> bool:
        """Is `job` still queued, as queued (not dropped since it was claimed)? Asked after the fetch,
        before its answers are published. One read: `drop` is one script, so the answer is from
        wholly before or wholly after a drop. A job queued anew since (its `queued_at` differs) is
        not this one."""
        raw = await self._redis.hget(self.jobs_key, job.id)
        return raw is not None and FetchJob.model_validate_json(raw).queued_at == job.queued_at

    async def retry(self, job: FetchJob, at: float) -> None:
        """Store the job as it is now (attempts, error) and make it due again at `at`, unless it was
        dropped while it ran."""
        await self._retry(keys=[self.jobs_key, self.due_key], args=[job.id, job.model_dump_json(), at])

    async def give_up(self, job: FetchJob, now: float) -> None:
        """Out of the queue, into the failed set (newest `keep_failed` kept) for someone to look at."""
        keys = [self.jobs_key, self.due_key, self.failed_key, self.failed_index_key]
        await self._give_up(keys=keys, args=[job.id, job.model_dump_json(), now, self._keep_failed])

    async def drop(self, job_id: str, remember_seconds: int = DROPPED_TTL_SECONDS) -> int:
        """Forget a lead's fetch wherever it is (waiting, claimed or given up) and keep it from being
        queued again for `remember_seconds`: the lead was deleted on the platform, so its answers
        must not be fetched, not even for a CREATED the platform delivers again (or late).
        Returns how many entries went.

        Why an index: scanning the failed set (up to `keep_failed` entries, decoded in Lua) blocked
        Redis for tens of milliseconds per DELETED. Every script that adds or removes failed entries
        keeps `failed_index_key` in step (one entry per lead), so a drop is a lookup. Entries written
        before the index existed (or by an older capture during a rollout) have no index entry: the
        drop sees the index's length differ from the failed set's (both O(1)) and indexes the whole
        set once, in the same script, so the drop that notices them finds them too."""
        keys = [self.jobs_key, self.due_key, self.failed_key, self.failed_index_key, self.dropped_key(job_id)]
        return int(await self._drop(keys=keys, args=[job_id, remember_seconds]))

    async def waiting(self) -> int:
        return int(await self._redis.zcard(self.due_key))

    async def failed(self) -> list[FetchJob]:
        """Given-up jobs, oldest first."""
        entries = cast(list[bytes], await self._redis.zrange(self.failed_key, 0, -1))
        return [FetchJob.model_validate_json(raw) for raw in entries]

    async def requeue(self, platform: Platform | None = None, now: float | None = None) -> list[FetchJob]:
        """Given-up jobs (of one platform, or all) queued again, due at once with a full set of tries:
        after a token was fixed or a form's access granted. Returns the jobs moved."""
        now = time.time() if now is None else now
        moved: list[FetchJob] = []
        for raw in cast(list[bytes], await self._redis.zrange(self.failed_key, 0, -1)):
            job = FetchJob.model_validate_json(raw)
            if platform is not None and job.platform != platform:
                continue
            fresh = job.model_copy(update={"attempts": 0})
            keys = [
                self.failed_key,
                self.jobs_key,
                self.due_key,
                self.failed_index_key,
                self.dropped_key(job.id),
            ]
            if await self._requeue(keys=keys, args=[raw, job.id, fresh.model_dump_json(), now]):
                moved.append(fresh)
        return moved

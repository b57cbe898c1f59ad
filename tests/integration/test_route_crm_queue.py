"""Route's CRM delivery queue against the real Redis: once per hand-off, leases, failures kept for a
requeue, and erasure taking a lead's deliveries with it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from schemas.base import utcnow
from schemas.dead_letter import RecordOrigin
from services.route.crm import CrmJob
from services.route.crm_queue import CrmQueue
from services.route.store import RedisStore
from services.runtime.redis_client import redis_client

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = redis_client(redis_url, 2.0)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex}:"


def job(lead: str = "lead:1", handoff: str = "a" * 32, team: str = "emea") -> CrmJob:
    origin = RecordOrigin(topic="leads.handoffs", partition=0, offset=7, key=lead)
    return CrmJob(lead_id=lead, handoff_id=handoff, team=team, origin=origin, body="{}", queued_at=0)


async def test_a_hand_off_is_queued_once_and_not_again_once_delivered(redis: Redis, prefix: str) -> None:
    queue = CrmQueue(redis, prefix, done_ttl=60)
    assert await queue.add(job(), now=100)
    assert not await queue.add(job(), now=101)  # a replay while it waits
    (claimed,) = (await queue.claim("emea", now=100, lease_seconds=30, limit=10)).jobs
    assert claimed == job()
    leased = await queue.claim("emea", now=120, lease_seconds=30, limit=10)
    assert leased.jobs == []  # leased to its claimer
    await queue.done(claimed)
    assert await queue.waiting("emea") == 0
    assert not await queue.add(job(), now=200)  # a replay after delivery
    assert await redis.ttl(f"{prefix}crm:done:{'a' * 32}") > 0


async def test_a_fetch_is_queued_in_one_step_and_each_replay_in_it_is_refused(
    redis: Redis, prefix: str
) -> None:
    queue = CrmQueue(redis, prefix, done_ttl=60)
    first, second = job(), job(lead="lead:2", handoff="b" * 32)
    assert await queue.add(first, now=100)
    assert await queue.add_many([first, second, second], now=100) == [False, True, False]
    claimed = await queue.claim("emea", now=100, lease_seconds=30, limit=1)
    assert (claimed.jobs, claimed.waiting) == ([first], 2)  # the claimed one still waits, leased


async def test_a_claim_drops_an_entry_whose_job_is_gone(redis: Redis, prefix: str) -> None:
    queue = CrmQueue(redis, prefix, done_ttl=60)
    await queue.add(job(), now=100)
    await redis.zadd(f"{prefix}crm:due:emea", {f"{'9' * 32}:lead:gone": 50})  # its job hash erased
    claimed = await queue.claim("emea", now=100, lease_seconds=30, limit=10)
    assert (claimed.jobs, claimed.waiting) == ([job()], 1)


async def test_a_claim_whose_worker_died_comes_due_after_its_lease(redis: Redis, prefix: str) -> None:
    queue = CrmQueue(redis, prefix, done_ttl=60)
    await queue.add(job(), now=100)
    assert (await queue.claim("emea", now=100, lease_seconds=30, limit=10)).jobs
    assert (await queue.claim("emea", now=131, lease_seconds=30, limit=10)).jobs == [job()]


async def test_a_retry_keeps_the_attempts_and_waits_until_it_is_due(redis: Redis, prefix: str) -> None:
    queue = CrmQueue(redis, prefix, done_ttl=60)
    await queue.add(job(), now=100)
    (claimed,) = (await queue.claim("emea", now=100, lease_seconds=30, limit=10)).jobs
    await queue.retry(claimed.failed("HTTP 503"), at=150)
    assert (await queue.claim("emea", now=149, lease_seconds=30, limit=10)).jobs == []
    (again,) = (await queue.claim("emea", now=150, lease_seconds=30, limit=10)).jobs
    assert (again.attempts, again.last_error) == (1, "HTTP 503")


async def test_given_up_jobs_wait_for_a_requeue_with_a_full_set_of_tries(redis: Redis, prefix: str) -> None:
    queue = CrmQueue(redis, prefix, done_ttl=60)
    other = job(lead="lead:2", handoff="b" * 32, team="na")
    for entry in (job(), other):
        await queue.add(entry, now=100)
        await queue.give_up(entry.failed("HTTP 400").failed("HTTP 400"), now=110)
    assert await queue.waiting("emea") == 0
    assert [j.handoff_id for j in await queue.failed()] == ["a" * 32, "b" * 32]
    assert not await queue.add(job(), now=120)  # a replay does not post a given-up hand-off again

    (moved,) = await queue.requeue(team="emea", now=130)
    assert (moved.handoff_id, moved.attempts, moved.last_error) == ("a" * 32, 0, "HTTP 400")
    assert await queue.requeue(team="emea", now=131) == []  # moved once
    assert (await queue.claim("emea", now=130, lease_seconds=30, limit=10)).jobs == [moved]
    assert (await queue.claim("na", now=130, lease_seconds=30, limit=10)).jobs == []
    assert [j.handoff_id for j in await queue.failed()] == ["b" * 32]


async def test_each_team_claims_only_its_own_deliveries(redis: Redis, prefix: str) -> None:
    queue = CrmQueue(redis, prefix, done_ttl=60)
    stuck = [job(lead=f"lead:{n}", handoff=f"{n:032x}") for n in range(5)]
    for entry in stuck:
        await queue.add(entry, now=100)  # due before na's, claimed by emea's loop only
    na = job(lead="lead:na", handoff="f" * 32, team="na")
    await queue.add(na, now=200)
    assert (await queue.claim("na", now=200, lease_seconds=30, limit=1)).jobs == [na]
    assert (await queue.waiting("emea"), await queue.waiting("na")) == (5, 1)


async def test_failures_older_than_kept_go_when_the_next_one_is_given_up(redis: Redis, prefix: str) -> None:
    queue = CrmQueue(redis, prefix, done_ttl=60, keep_failed_seconds=100)
    old, new = job(lead="lead:old", handoff="c" * 32), job(lead="lead:new", handoff="d" * 32)
    await queue.add(old, now=0)
    await queue.give_up(old, now=10)
    await queue.add(new, now=200)
    await queue.give_up(new, now=200)
    assert [j.handoff_id for j in await queue.failed()] == ["d" * 32]
    assert not await redis.exists(f"{prefix}crm:jobs:lead:old")


async def test_a_job_erased_while_it_was_tried_is_not_written_back(redis: Redis, prefix: str) -> None:
    queue = CrmQueue(redis, prefix, done_ttl=60)
    store = RedisStore(redis, prefix)
    await queue.add(job(), now=100)
    await queue.add(job(handoff="e" * 32, team="na"), now=100)  # reassigned to another team since
    claimed = [
        *(await queue.claim("emea", now=100, lease_seconds=30, limit=10)).jobs,
        *(await queue.claim("na", now=100, lease_seconds=30, limit=10)).jobs,
    ]
    assert len(claimed) == 2
    exported = (await store.export("lead:1"))["crm_deliveries"]
    assert sorted(job["handoff_id"] for job in exported) == ["a" * 32, "e" * 32]
    erased = await store.erase("lead:1", utcnow())
    assert erased["crm_deliveries"] == 2
    assert await queue.waiting("emea") == await queue.waiting("na") == 0  # each team's due set
    await queue.retry(claimed[0].failed("timeout"), at=120)
    await queue.give_up(claimed[1].failed("HTTP 400"), now=120)
    assert await queue.waiting("emea") == await queue.waiting("na") == 0
    assert await queue.failed() == []
    assert not await redis.exists(f"{prefix}crm:jobs:lead:1")
    assert (await store.export("lead:1"))["crm_deliveries"] == []


async def test_a_hand_off_made_before_its_leads_erasure_is_not_queued(redis: Redis, prefix: str) -> None:
    """Read late (a lag, a replay of leads.handoffs), a hand-off from before the erasure would bring
    the lead's contact back into Redis and post it to the CRM."""
    queue = CrmQueue(redis, prefix, done_ttl=60)
    erased_at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    await RedisStore(redis, prefix).erase("lead:1", erased_at)
    before = job().model_copy(update={"handed_off_at": erased_at.timestamp() - 1})
    assert not await queue.add(before, now=100)
    assert not await redis.exists(f"{prefix}crm:jobs:lead:1")
    came_back = job(handoff="f" * 32).model_copy(update={"handed_off_at": erased_at.timestamp() + 1})
    assert await queue.add(came_back, now=100)
    assert await queue.add(job(lead="lead:2", handoff="b" * 32), now=100)  # other leads: as before

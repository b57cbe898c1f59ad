"""LinkedIn's DELETED against contact fetches: with Redis away, with the CREATED delivered again,
with the erasure not published; and the queue's drop, which must stay cheap with many given-up jobs."""

from __future__ import annotations

import asyncio
import json
from typing import cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from schemas import Interaction, TopicName
from services.capture.app import create_app
from services.capture.fetch_queue import FetchJob, FetchQueue
from services.capture.settings import CaptureSettings
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.runtime.topics import ensure_pipeline_topics
from tests.eventually import eventually
from tests.integration import test_capture_contact_fetch as fetch_tests
from tests.integration.test_capture_contact_fetch import RESPONSE_URN, StandIn, capture_settings
from tests.integration.test_capture_webhooks import LI_SECRET, sign
from tests.kafka import consume_until

pytestmark = pytest.mark.integration

stand_in, settings = fetch_tests.stand_in, fetch_tests.settings  # the stand-in LinkedIn, its capture

FETCHES = "leadpipe_capture_contact_fetches_total"
Client = TestClient[web.Request, web.Application]


def note(action: str) -> bytes:
    return json.dumps(
        {"type": "LEAD_ACTION", "leadGenFormResponse": RESPONSE_URN, "leadAction": action}
    ).encode()


async def post(client: Client, action: str) -> int:
    body = note(action)
    headers = {"X-LI-Signature": sign(LI_SECRET, body, b"hmacsha256=")}
    return (await client.post("/v1/webhooks/linkedin", data=body, headers=headers)).status


async def published(broker: EmbeddedBroker, settings: CaptureSettings) -> list[str]:
    """The interaction types on the topic (read for 2 s)."""
    stored = await consume_until(
        broker.bootstrap_servers, settings.topic(TopicName.INTERACTIONS), lambda rs: False, within=2
    )
    return [Interaction.model_validate_json(r.value).type.value for r in stored if r.value]


async def called(stand_in: StandIn, times: int) -> None:
    await eventually(lambda: len(stand_in.calls) >= times, within=5)


@pytest.fixture
async def redis_away(broker: EmbeddedBroker, suffix: str, stand_in: StandIn) -> CaptureSettings:
    """Capture with Redis at a closed port; Lead Sync down until a test lets it answer."""
    stand_in.failures = 10**6
    settings = capture_settings(
        broker, f"redis://127.0.0.1:{free_port()}/0", suffix, stand_in, redis_timeout=0.2
    )
    await ensure_pipeline_topics(settings)
    return settings


async def test_with_redis_away_a_created_delivered_twice_is_cancelled_by_the_deleted(
    redis_away: CaptureSettings, broker: EmbeddedBroker, stand_in: StandIn
) -> None:
    """LinkedIn retried the CREATED (no dedupe without Redis): both deliveries' fetches are one, and
    the DELETED stops it and counts it, though Redis cannot drop anything."""
    async with TestClient(TestServer(create_app(redis_away))) as client:
        assert await post(client, "CREATED") == 200
        assert await post(client, "CREATED") == 200
        await called(stand_in, 1)
        # The erasure is out, but no drop reached Redis: LinkedIn is asked to deliver it again.
        assert await post(client, "DELETED") == 503
        erased_at = len(stand_in.calls)
        stand_in.failures = 0  # Lead Sync answers again: a fetch still retrying would publish
        await asyncio.sleep(1.0)
        metrics = await (await client.get("/metrics")).text()
    assert len(stand_in.calls) == erased_at
    assert "identify" not in await published(broker, redis_away)
    assert f'{FETCHES}{{outcome="dropped",platform="linkedin"}} 1.0' in metrics
    erasures = await consume_until(
        broker.bootstrap_servers, redis_away.topic(TopicName.PRIVACY), lambda rs: False, within=1
    )
    assert [json.loads(r.value)["kind"] for r in erasures if r.value] == ["erase"]  # out despite the 503


async def test_with_redis_away_no_fetch_outlives_capture(
    redis_away: CaptureSettings, stand_in: StandIn
) -> None:
    async with TestClient(TestServer(create_app(redis_away))) as client:
        assert await post(client, "CREATED") == 200
        assert await post(client, "CREATED") == 200
        await called(stand_in, 2)
    stopped_at = len(stand_in.calls)
    left = [t for t in asyncio.all_tasks() if "_retry_in_memory" in getattr(t.get_coro(), "__qualname__", "")]
    assert left == []  # each was cancelled with capture
    await asyncio.sleep(0.5)  # several back-offs
    assert len(stand_in.calls) == stopped_at


async def test_with_redis_away_a_created_after_the_deleted_starts_no_fetch(
    redis_away: CaptureSettings, broker: EmbeddedBroker, stand_in: StandIn
) -> None:
    async with TestClient(TestServer(create_app(redis_away))) as client:
        assert await post(client, "CREATED") == 200
        await called(stand_in, 1)
        assert await post(client, "DELETED") == 503  # published, not dropped: delivered again later
        erased_at = len(stand_in.calls)
        stand_in.failures = 0
        assert await post(client, "CREATED") == 200  # the earlier delivery, retried by LinkedIn
        await asyncio.sleep(1.0)
    assert len(stand_in.calls) == erased_at
    assert "identify" not in await published(broker, redis_away)


async def test_a_created_delivered_again_after_the_deleted_is_not_fetched(
    settings: CaptureSettings, broker: EmbeddedBroker, stand_in: StandIn, redis_url: str
) -> None:
    stand_in.failures = 10**6
    redis = Redis.from_url(redis_url)
    queue = FetchQueue(redis, namespace=settings.topic_suffix)
    async with TestClient(TestServer(create_app(settings))) as client:
        assert await post(client, "CREATED") == 200
        assert await post(client, "DELETED") == 200
        assert await post(client, "CREATED") == 200  # the earlier delivery, retried by LinkedIn
    async with TestClient(TestServer(create_app(settings))) as client:  # another capture: Redis knows
        assert await post(client, "CREATED") == 200
        stand_in.failures = 0
        await asyncio.sleep(1.0)
    assert "identify" not in await published(broker, settings)
    assert await queue.waiting() == 0 and await queue.failed() == []
    await redis.aclose()


async def test_a_dropped_job_cannot_be_queued_again_until_its_tombstone_expires(
    redis_url: str, suffix: str
) -> None:
    redis = Redis.from_url(redis_url)
    queue = FetchQueue(redis, namespace=suffix)
    job = FetchJob(platform="linkedin", ref="urn:li:leadGenFormResponse:7", lead={}, queued_at=0.0)
    assert await queue.add(job)
    assert await queue.drop(job.id, remember_seconds=3600) == 1
    assert not await queue.add(job.model_copy(update={"queued_at": 1.0}))
    assert await queue.waiting() == 0
    assert 3590 < await redis.ttl(queue.dropped_key(job.id)) <= 3600
    other = FetchJob(platform="linkedin", ref="urn:li:leadGenFormResponse:8", lead={}, queued_at=0.0)
    assert await queue.drop(other.id, remember_seconds=1) == 0  # never queued: still remembered
    assert not await queue.add(other)
    await asyncio.sleep(1.1)
    assert await queue.add(other)  # long past LinkedIn's retries: a new job (never in practice)
    await redis.aclose()


async def test_the_failed_index_keeps_in_step_with_the_failed_set(redis_url: str, suffix: str) -> None:
    """Given up beyond `keep_failed`, given up twice, requeued, dropped: every failed entry has its
    index entry and no other, so a drop is a lookup."""
    redis = Redis.from_url(redis_url)
    queue = FetchQueue(redis, namespace=suffix, keep_failed=3)

    def job(n: int) -> FetchJob:
        return FetchJob(platform="linkedin", ref=f"urn:li:leadGenFormResponse:{n}", lead={}, queued_at=n)

    async def in_step() -> list[str]:
        entries = [raw.decode() for raw in cast(list[bytes], await redis.zrange(queue.failed_key, 0, -1))]
        stored = cast(dict[bytes, bytes], await redis.hgetall(queue.failed_index_key))
        index = {k.decode(): v.decode() for k, v in stored.items()}
        assert sorted(index.values()) == sorted(entries)
        assert all(FetchJob.model_validate_json(entry).id == jid for jid, entry in index.items())
        return [FetchJob.model_validate_json(entry).id for entry in entries]

    for n in range(5):
        await queue.add(job(n))
        await queue.give_up(job(n).failed("HTTP 404"), now=100.0 + n)
    assert await in_step() == [job(n).id for n in (2, 3, 4)]  # the oldest trimmed
    await queue.add(job(3))
    await queue.give_up(job(3).failed("HTTP 403"), now=200.0)  # the same lead given up again
    assert await in_step() == [job(n).id for n in (2, 4, 3)]  # once, its latest
    assert len(await queue.requeue(now=300.0)) == 3
    assert await in_step() == [] and await queue.waiting() == 3
    claimed = {j.id: j for j in await queue.claim(now=300.0, lease_seconds=60, limit=10)}
    for n in (2, 3, 4):
        await queue.give_up(claimed[job(n).id].failed("HTTP 404"), now=400.0 + n)
    assert await in_step() == [job(n).id for n in (2, 3, 4)]
    assert await queue.drop(job(3).id) == 1
    assert await in_step() == [job(n).id for n in (2, 4)]
    await redis.aclose()


async def test_a_drop_finds_failed_entries_written_before_the_index(redis_url: str, suffix: str) -> None:
    """Entries the code before the index wrote (no index entry), a lead's twice among them."""
    redis = Redis.from_url(redis_url)
    queue = FetchQueue(redis, namespace=suffix)
    jobs = [
        FetchJob(platform="linkedin", ref=f"urn:li:leadGenFormResponse:{n}", lead={}, queued_at=q).failed("x")
        for n, q in ((1, 0.0), (2, 0.0), (1, 1.0))
    ]
    await redis.zadd(queue.failed_key, {job.model_dump_json(): score for score, job in enumerate(jobs)})
    assert await queue.drop(jobs[0].id) == 2
    assert [job.id for job in await queue.failed()] == [jobs[1].id]
    new = FetchJob(platform="meta", ref="5", lead={}, queued_at=0.0)
    await queue.add(new)
    await queue.give_up(new.failed("HTTP 404"), now=10.0)
    assert await queue.drop(jobs[1].id) == 1
    assert [job.id for job in await queue.failed()] == [new.id]
    await redis.aclose()


async def test_the_fetch_is_dropped_even_when_the_erasure_could_not_be_published(
    settings: CaptureSettings, broker: EmbeddedBroker, stand_in: StandIn, redis_url: str, suffix: str
) -> None:
    """The DELETED answered 503 (the broker did not acknowledge the erase): LinkedIn retries it, maybe
    hours later. Dropped first, the fetch does not publish the person's answers meanwhile."""
    stand_in.failures = 10**6
    redis = Redis.from_url(redis_url)
    queue = FetchQueue(redis, namespace=settings.topic_suffix)
    async with TestClient(TestServer(create_app(settings))) as client:
        assert await post(client, "CREATED") == 200
        await called(stand_in, 1)
    assert await queue.waiting() == 1
    no_broker = capture_settings(broker, redis_url, suffix, stand_in, publish_timeout=1)
    no_broker = no_broker.model_copy(update={"broker_url": f"127.0.0.1:{free_port()}"})
    async with TestClient(TestServer(create_app(no_broker))) as client:
        assert await post(client, "DELETED") == 503
    assert await queue.waiting() == 0
    await redis.aclose()

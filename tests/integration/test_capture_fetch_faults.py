"""Contact fetches that go wrong in ways the platforms' error codes do not say: an answer the mapping
did not foresee, a queued job capture cannot read. Each is counted and ends; neither stalls the queue."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from services.capture.app import create_app
from services.capture.fetch_queue import FetchJob, FetchQueue
from services.capture.settings import CaptureSettings
from services.devstack.broker import EmbeddedBroker
from services.runtime.topics import ensure_pipeline_topics
from tests.integration.test_capture_webhooks import APP_SECRET, meta_body, sign

pytestmark = pytest.mark.integration


@pytest.fixture
async def odd_graph() -> AsyncIterator[tuple[str, list[str]]]:
    """A Graph API stand-in whose answer has a null where an answer object belongs."""
    calls: list[str] = []

    async def lead(request: web.Request) -> web.Response:
        calls.append(request.match_info["leadgen_id"])
        return web.json_response({"id": request.match_info["leadgen_id"], "field_data": [None]})

    app = web.Application()
    app.router.add_get("/graph/{leadgen_id}", lead)
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url("/graph")), calls
    await server.close()


async def test_an_answer_the_mapping_trips_on_is_a_failed_try_and_given_up_after_the_tries(
    broker: EmbeddedBroker, redis_url: str, suffix: str, odd_graph: tuple[str, list[str]]
) -> None:
    """It raised past `try_once`: the job stayed leased, was tried again after every lease, forever,
    and was never counted as failed nor given up."""
    settings = CaptureSettings(
        broker_url=broker.url,
        redis_url=redis_url,
        topic_suffix=suffix,
        api_keys="k",
        meta_app_secret=APP_SECRET,
        graph_url=odd_graph[0],
        contact_fetch_attempts=3,
        contact_fetch_backoff_seconds=0.05,
        contact_fetch_poll_seconds=0.05,
        privacy_consumer=False,
    )
    await ensure_pipeline_topics(settings)
    redis = Redis.from_url(redis_url)
    queue = FetchQueue(redis, namespace=suffix)
    try:
        async with TestClient(TestServer(create_app(settings))) as client:
            body = meta_body("888000111")
            headers = {"X-Hub-Signature-256": "sha256=" + sign(APP_SECRET, body)}
            assert (await client.post("/v1/webhooks/meta", data=body, headers=headers)).status == 200
            deadline = time.monotonic() + 8
            while not await queue.failed() and time.monotonic() < deadline:
                await client.get("/healthz")
            metrics = await (await client.get("/metrics")).text()
        (failed,) = await queue.failed()
    finally:
        await redis.aclose()
    assert failed.attempts == 3 and failed.last_error is not None and "AttributeError" in failed.last_error
    assert odd_graph[1] == ["888000111"] * 3
    assert 'leadpipe_capture_contact_fetches_total{outcome="failed",platform="meta"} 2.0' in metrics
    assert 'leadpipe_capture_contact_fetches_total{outcome="gave_up",platform="meta"} 1.0' in metrics


async def test_a_job_that_cannot_be_read_is_set_aside_and_the_others_are_claimed(
    redis_url: str, suffix: str
) -> None:
    """It raised in every round's claim, so no contact was fetched any more."""
    redis = Redis.from_url(redis_url)
    aside: list[str] = []
    queue = FetchQueue(redis, namespace=suffix, on_set_aside=aside.append)
    try:
        good = FetchJob(platform="meta", ref="1", lead={"leadgen_id": "1"}, queued_at=0.0)
        assert await queue.add(good, now=100.0)
        await redis.hset(queue.jobs_key, "meta:2", b'{"platform": "meta", "ref": "2"}')  # no lead
        await redis.zadd(queue.due_key, {"meta:2": 100.0})
        assert await queue.claim(now=100.0, lease_seconds=60, limit=10) == [good]
        assert aside == ["meta:2"]
        assert await redis.hget(queue.unreadable_key, "meta:2") == b'{"platform": "meta", "ref": "2"}'
        assert await redis.hexists(queue.jobs_key, "meta:2") == 0
        assert await queue.waiting() == 1  # the good one only, leased
        assert await queue.claim(now=1000.0, lease_seconds=60, limit=10) == [good]  # nothing raises
    finally:
        await redis.aclose()

"""Idempotency, batches, rate limits and limits against the real broker and the real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from schemas import Interaction, TopicName
from services.capture.app import create_app
from services.capture.auth import client_of
from services.capture.domain import published_event_id
from services.capture.guard import ClaimState, Deduplicator
from services.capture.settings import CaptureSettings
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from tests.capture_client import Client, started_client
from tests.kafka import consume_until

pytestmark = pytest.mark.integration

KEY = {"X-API-Key": "test-key"}
EVENT = {
    "type": "page_view",
    "occurred_at": "2026-11-21T09:30:00Z",
    "anonymous_id": "anon-1",
    "source": {"channel": "web"},
}


@pytest.fixture
async def settings(broker: EmbeddedBroker, redis_url: str, suffix: str) -> CaptureSettings:
    return CaptureSettings(
        broker_url=broker.url, redis_url=redis_url, topic_suffix=suffix, api_keys=f"test-key{suffix}"
    )


@pytest.fixture
async def client(settings: CaptureSettings) -> AsyncIterator[Client]:
    client = await started_client(settings)
    yield client
    await client.close()


def _key(settings: CaptureSettings) -> dict[str, str]:
    return {"X-API-Key": f"test-key{settings.topic_suffix}"}


def _published(event_id: str, key: str) -> str:
    """The event id consumers see: the sender's, within the ids of its API client (`key`), as its
    idempotency key is; two clients' same id are two events (`domain.published_event_id`)."""
    return published_event_id(event_id, client_of(key))


async def _interactions(
    broker: EmbeddedBroker, settings: CaptureSettings, at_least: int
) -> list[Interaction]:
    topic = settings.topic(TopicName.INTERACTIONS)
    records = await consume_until(broker.bootstrap_servers, topic, lambda r: len(r) >= at_least, within=3)
    return [Interaction.model_validate_json(r.value) for r in records]


async def test_a_repeated_event_id_is_acknowledged_but_published_once(
    client: Client, settings: CaptureSettings, broker: EmbeddedBroker
) -> None:
    event_id = f"ev{settings.topic_suffix}"
    first = await client.post("/v1/events", json={**EVENT, "event_id": event_id}, headers=_key(settings))
    second = await client.post("/v1/events", json={**EVENT, "event_id": event_id}, headers=_key(settings))
    assert first.status == second.status == 202
    one, two = await first.json(), await second.json()
    assert one["duplicate"] is False
    assert two["duplicate"] is True
    assert (two["partition"], two["offset"], two["lead_id"]) == (
        one["partition"],
        one["offset"],
        one["lead_id"],
    )
    other = await client.post(
        "/v1/events", json={**EVENT, "event_id": event_id + "-2"}, headers=_key(settings)
    )
    assert (await other.json())["duplicate"] is False
    stored = await _interactions(broker, settings, 3)
    key = _key(settings)["X-API-Key"]
    assert sorted(i.event_id for i in stored) == sorted(
        _published(e, key) for e in (event_id, event_id + "-2")
    )
    metrics = await (await client.get("/metrics")).text()
    assert 'leadpipe_capture_duplicates_total{record="interaction"} 1.0' in metrics


async def test_two_clients_may_send_the_same_event_id(
    broker: EmbeddedBroker, redis_url: str, suffix: str
) -> None:
    """Event ids are the sender's: another API client's `ev-1` is a different event, not a repeat
    answered with the first client's lead id."""
    settings = CaptureSettings(
        broker_url=broker.url,
        redis_url=redis_url,
        topic_suffix=suffix,
        api_keys=f"site-a{suffix},site-b{suffix}",
    )
    client = await started_client(settings)
    try:
        event_id = f"ev{suffix}"
        a = {**EVENT, "event_id": event_id, "anonymous_id": "visitor-of-a"}
        b = {**EVENT, "event_id": event_id, "anonymous_id": "visitor-of-b"}
        first = await client.post("/v1/events", json=a, headers={"X-API-Key": f"site-a{suffix}"})
        second = await client.post(
            "/v1/events:batch", json={"events": [b]}, headers={"X-API-Key": f"site-b{suffix}"}
        )
        again = await client.post("/v1/events", json=b, headers={"X-API-Key": f"site-b{suffix}"})
        one, (two,), three = await first.json(), (await second.json())["results"], await again.json()
        assert (one["duplicate"], two["status"], three["duplicate"]) == (False, "accepted", True)
        assert two["lead_id"] != one["lead_id"]
        assert three["lead_id"] == two["lead_id"]  # a client's own repeat is still a duplicate
        stored = await _interactions(broker, settings, 2)
        assert sorted(i.anonymous_id or "" for i in stored) == ["visitor-of-a", "visitor-of-b"]
    finally:
        await client.close()


def _without_broker(redis_url: str, suffix: str) -> CaptureSettings:
    """A capture whose broker never answers, with the idempotency keys of the one that takes the retry."""
    return CaptureSettings(
        broker_url=f"127.0.0.1:{free_port()}",
        redis_url=redis_url,
        topic_suffix=suffix,
        api_keys="test-key",
        publish_timeout=0.5,
    )


async def test_a_503_does_not_swallow_the_retry(redis_url: str, suffix: str, broker: EmbeddedBroker) -> None:
    """The id is marked only after the broker acknowledged: a retry after a 503 is published."""
    event = {**EVENT, "event_id": f"retry{suffix}"}
    async with TestClient(TestServer(create_app(_without_broker(redis_url, suffix)))) as dead:
        assert (await dead.post("/v1/events", json=event, headers=KEY)).status == 503
    up = CaptureSettings(broker_url=broker.url, redis_url=redis_url, topic_suffix=suffix, api_keys="test-key")
    client = await started_client(up)
    try:
        response = await client.post("/v1/events", json=event, headers=KEY)
        assert response.status == 202
        assert (await response.json())["duplicate"] is False
    finally:
        await client.close()
    assert [i.event_id for i in await _interactions(broker, up, 1)] == [
        _published(f"retry{suffix}", "test-key")
    ]


async def test_redis_down_fails_open_and_counts_it(broker: EmbeddedBroker, suffix: str) -> None:
    settings = CaptureSettings(
        broker_url=broker.url,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        topic_suffix=suffix,
        api_keys="test-key",
    )
    client = await started_client(settings)
    try:
        for _ in range(2):
            response = await client.post("/v1/events", json={**EVENT, "event_id": "same"}, headers=KEY)
            assert response.status == 202
        metrics = await (await client.get("/metrics")).text()
    finally:
        await client.close()
    assert "leadpipe_capture_dedupe_unavailable_total 2.0" in metrics
    assert "leadpipe_capture_rate_limit_unavailable_total 2.0" in metrics
    assert len(await _interactions(broker, settings, 2)) == 2  # consumers dedupe by event_id


async def test_batch_reports_each_event_and_publishes_the_valid_ones(
    client: Client, settings: CaptureSettings, broker: EmbeddedBroker
) -> None:
    events = [
        {**EVENT, "event_id": f"b0{settings.topic_suffix}"},
        {**EVENT, "type": "teleport"},
        {**EVENT, "event_id": f"b0{settings.topic_suffix}"},
        {**EVENT, "anonymous_id": "anon-2", "contact": {"email": "Jo@Example.com"}},
    ]
    response = await client.post("/v1/events:batch", json={"events": events}, headers=_key(settings))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "duplicate", "accepted"]
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3]
    assert body["results"][1]["fields"][0]["field"] == "type"
    assert (body["accepted"], body["refused"]) == (3, 1)
    stored = await _interactions(broker, settings, 3)
    assert len(stored) == 2
    assert {i.lead_id for i in stored} == {body["results"][0]["lead_id"], body["results"][3]["lead_id"]}


async def test_claims_for_a_batch_in_one_call(redis_url: str, suffix: str) -> None:
    """New, in flight (pending or given twice), done with its answer; a released claim is new again."""
    redis = Redis.from_url(redis_url)
    try:
        dedupe = Deduplicator(redis, window_seconds=60, pending_seconds=60, namespace=suffix)
        (done,) = await dedupe.claim(["done"])
        await dedupe.complete([(done, {"offset": 7})])
        await dedupe.claim(["pending"])
        claims = await dedupe.claim(["new", "pending", "new", "done"])
        assert [c.state for c in claims] == [
            ClaimState.NEW,
            ClaimState.IN_FLIGHT,
            ClaimState.IN_FLIGHT,
            ClaimState.DONE,
        ]
        assert claims[3].previous == {"offset": 7}
        await dedupe.release(claims)  # only the new claim is freed: the others are not ours
        assert [c.state for c in await dedupe.claim(["new", "pending", "done"])] == [
            ClaimState.NEW,
            ClaimState.IN_FLIGHT,
            ClaimState.DONE,
        ]
        assert await dedupe.claim([]) == []
    finally:
        await redis.aclose()


async def test_claims_expire_and_outlive_a_redis_restart(redis_url: str, suffix: str) -> None:
    """A claim holds for the pending time, a mark for the window; the claim and mark scripts load
    again when Redis lost them (a restart empties its script cache)."""
    redis = Redis.from_url(redis_url)
    try:
        dedupe = Deduplicator(redis, window_seconds=600, pending_seconds=30, namespace=suffix)
        (claim,) = await dedupe.claim(["ttl"])
        assert 25 <= await redis.ttl(claim.key) <= 30
        await redis.script_flush()
        await dedupe.complete([(claim, {"offset": 3})])
        assert 595 <= await redis.ttl(claim.key) <= 600
        await redis.script_flush()
        (again,) = await dedupe.claim(["ttl"])
        assert (again.state, again.previous) == (ClaimState.DONE, {"offset": 3})
    finally:
        await redis.aclose()


async def test_a_repeated_batch_is_published_once(
    client: Client, settings: CaptureSettings, broker: EmbeddedBroker
) -> None:
    events = [
        {**EVENT, "event_id": f"rb{n}{settings.topic_suffix}", "anonymous_id": f"a{n}"} for n in range(3)
    ]
    first = await client.post("/v1/events:batch", json={"events": events}, headers=_key(settings))
    again = [*events, {**EVENT, "event_id": f"rb3{settings.topic_suffix}", "anonymous_id": "a3"}]
    second = await client.post("/v1/events:batch", json={"events": again}, headers=_key(settings))
    assert [r["status"] for r in (await first.json())["results"]] == ["accepted"] * 3
    body = await second.json()
    assert [r["status"] for r in body["results"]] == ["duplicate"] * 3 + ["accepted"]
    assert [r["lead_id"] for r in body["results"][:3]] == [
        r["lead_id"] for r in (await first.json())["results"]
    ]
    stored = await _interactions(broker, settings, 5)
    key = _key(settings)["X-API-Key"]
    assert sorted(i.event_id for i in stored) == sorted(_published(e["event_id"], key) for e in again)


async def test_a_batch_refused_with_503_is_accepted_when_retried(
    redis_url: str, suffix: str, broker: EmbeddedBroker
) -> None:
    """Every claim of a batch the broker did not take is released, so the retry is not "in flight"."""
    events = [{**EVENT, "event_id": f"r{n}{suffix}", "anonymous_id": f"a{n}"} for n in range(3)]
    events[1]["contact"] = {"email": "jo@example.com"}
    events[1]["consent"] = {"marketing_email": True, "text_version": "2026-01"}
    async with TestClient(TestServer(create_app(_without_broker(redis_url, suffix)))) as dead:
        response = await dead.post("/v1/events:batch", json={"events": events}, headers=KEY)
        assert response.status == 503
    up = CaptureSettings(broker_url=broker.url, redis_url=redis_url, topic_suffix=suffix, api_keys="test-key")
    client = await started_client(up)
    try:
        response = await client.post("/v1/events:batch", json={"events": events}, headers=KEY)
        assert [r["status"] for r in (await response.json())["results"]] == ["accepted"] * 3
    finally:
        await client.close()
    assert sorted(i.event_id for i in await _interactions(broker, up, 3)) == sorted(
        _published(e["event_id"], "test-key") for e in events
    )


async def test_batch_of_more_than_500_is_refused(client: Client, settings: CaptureSettings) -> None:
    response = await client.post("/v1/events:batch", json={"events": [EVENT] * 501}, headers=_key(settings))
    assert response.status == 413
    assert (await response.json())["error"] == "batch_too_large"


async def test_rate_limit_per_key_answers_429_with_retry_after(
    broker: EmbeddedBroker, redis_url: str, suffix: str
) -> None:
    settings = CaptureSettings(
        broker_url=broker.url,
        redis_url=redis_url,
        topic_suffix=suffix,
        api_keys=f"a{suffix},b{suffix}",
        rate_limit_per_minute=2,
    )
    client = await started_client(settings)
    try:
        statuses = [
            (await client.post("/v1/events", json=EVENT, headers={"X-API-Key": f"a{suffix}"})).status
            for _ in range(3)
        ]
        limited = await client.post("/v1/events", json=EVENT, headers={"X-API-Key": f"a{suffix}"})
        other = await client.post("/v1/events", json=EVENT, headers={"X-API-Key": f"b{suffix}"})
    finally:
        await client.close()
    assert statuses == [202, 202, 429]
    assert limited.status == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert other.status == 202


async def test_deep_json_is_refused(client: Client, settings: CaptureSettings) -> None:
    deep: object = "x"
    for _ in range(20):
        deep = {"a": deep}
    response = await client.post("/v1/events", json={**EVENT, "properties": deep}, headers=_key(settings))
    assert response.status == 400
    assert (await response.json())["error"] == "json_too_deep"


async def test_cors_allows_only_configured_origins(broker: EmbeddedBroker, redis_url: str) -> None:
    settings = CaptureSettings(
        broker_url=broker.url, redis_url=redis_url, api_keys="k", cors_origins="https://shop.example"
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        preflight = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
        ok = await client.options("/v1/events", headers=preflight)
        assert ok.status == 204
        assert ok.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert "X-API-Key" in ok.headers["Access-Control-Allow-Headers"]
        evil = await client.options("/v1/events", headers={**preflight, "Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in evil.headers

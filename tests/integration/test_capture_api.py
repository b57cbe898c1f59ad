"""Capture's POST /v1/events against the real broker: 202 only after the broker's acknowledgement."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from schemas import Interaction, TopicName
from services.capture.app import create_app
from services.capture.auth import client_of
from services.capture.domain import published_event_id
from services.capture.settings import CaptureSettings
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.runtime.topics import ensure_pipeline_topics
from tests.kafka import consume_until

pytestmark = pytest.mark.integration

KEY = {"X-API-Key": "test-key"}
EVENT = {
    "type": "demo_request",
    "occurred_at": "2026-11-21T09:30:00Z",
    "contact": {"email": " Jane.Doe@Example.com ", "first_name": "Jane"},
    "source": {"channel": "web", "utm_campaign": "spring"},
}


@pytest.fixture
async def client(broker: EmbeddedBroker, suffix: str) -> AsyncIterator[TestClient[object, object]]:
    settings = CaptureSettings(
        broker_url=broker.url, topic_suffix=suffix, api_keys="test-key", max_body_bytes=4096
    )
    await ensure_pipeline_topics(settings)
    async with TestClient(TestServer(create_app(settings))) as test_client:
        test_client.app_settings = settings  # type: ignore[attr-defined]
        yield test_client


async def test_accepted_event_is_on_the_topic_keyed_by_lead_id(
    client: TestClient[object, object], broker: EmbeddedBroker
) -> None:
    response = await client.post("/v1/events", json={**EVENT, "event_id": "ev-42"}, headers=KEY)
    assert response.status == 202, await response.text()
    body = await response.json()
    # published within the API client's ids, as its idempotency key is (another client's ev-42 is
    # another event); the answer names the id consumers see
    published = published_event_id("ev-42", client_of("test-key"))
    assert body["event_id"] == published
    assert body["identity"] == "email"

    topic = client.app_settings.topic(TopicName.INTERACTIONS)  # type: ignore[attr-defined]
    records = await consume_until(broker.bootstrap_servers, topic, lambda r: len(r) >= 1)
    assert len(records) == 1
    assert records[0].key == body["lead_id"].encode()
    assert records[0].partition == body["partition"]
    stored = Interaction.model_validate_json(records[0].value)
    assert stored.event_id == published
    assert stored.contact.email == "jane.doe@example.com"
    assert stored.lead_id == body["lead_id"]


async def test_api_key_is_required_and_checked(client: TestClient[object, object]) -> None:
    missing = await client.post("/v1/events", json=EVENT)
    assert missing.status == 401
    assert (await missing.json())["error"] == "missing_api_key"
    wrong = await client.post("/v1/events", json=EVENT, headers={"X-API-Key": "guess"})
    assert wrong.status == 403


async def test_invalid_events_name_field_and_reason(client: TestClient[object, object]) -> None:
    response = await client.post(
        "/v1/events", json={**EVENT, "type": "teleport", "contact": {"email": "nope"}}, headers=KEY
    )
    assert response.status == 422
    body = await response.json()
    fields = {problem["field"]: problem["reason"] for problem in body["fields"]}
    assert set(fields) == {"type", "contact.email"}
    assert "not a valid email address" in fields["contact.email"]


async def test_malformed_json_is_400(client: TestClient[object, object]) -> None:
    response = await client.post("/v1/events", data=b'{"type": ', headers=KEY)
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_json"


async def test_oversized_body_is_413(client: TestClient[object, object]) -> None:
    big = {**EVENT, "properties": {"blob": "x" * 8000}}
    response = await client.post("/v1/events", json=big, headers=KEY)
    assert response.status == 413
    assert (await response.json())["error"] == "body_too_large"


async def test_metrics_count_requests_and_publishes(client: TestClient[object, object]) -> None:
    await client.post("/v1/events", json=EVENT, headers=KEY)
    await client.post("/v1/events", json={"type": "x"}, headers=KEY)
    text = await (await client.get("/metrics")).text()
    assert 'leadpipe_capture_events_published_total{source="web",type="demo_request"} 1.0' in text
    assert 'leadpipe_capture_events_rejected_total{reason="validation_failed"} 1.0' in text
    assert 'leadpipe_capture_requests_total{route="/v1/events",status="202"} 1.0' in text
    assert "jane" not in text.lower()


async def test_unreachable_broker_answers_503_with_retry_after() -> None:
    settings = CaptureSettings(
        broker_url=f"127.0.0.1:{free_port()}", api_keys="test-key", publish_timeout=1, retry_after_seconds=7
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        response = await client.post("/v1/events", json=EVENT, headers=KEY)
        assert response.status == 503
        assert response.headers["Retry-After"] == "7"
        assert (await response.json())["error"] == "broker_unavailable"
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["checks"]["broker"] is False
        assert (await client.get("/healthz")).status == 200


async def test_readyz_waits_for_peers(broker: EmbeddedBroker) -> None:
    settings = CaptureSettings(
        broker_url=broker.url,
        api_keys="k",
        ready_peers={"score": f"http://127.0.0.1:{free_port()}/readyz"},
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        response = await client.get("/readyz")
        assert response.status == 503
        assert await response.json() == {
            "service": "capture",
            "ready": False,
            "checks": {"broker": True, "peers": False},
        }

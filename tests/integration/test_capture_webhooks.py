"""Meta, Google and LinkedIn webhooks with their real payload shapes and verification."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from schemas import Interaction, PrivacyRecord, TopicName
from services.capture.app import create_app
from services.capture.settings import CaptureSettings
from services.devstack.broker import EmbeddedBroker
from services.runtime.topics import ensure_pipeline_topics
from tests.kafka import consume_until

pytestmark = pytest.mark.integration

Client = TestClient[object, object]
APP_SECRET, VERIFY, GOOGLE_KEY, LI_SECRET = "meta-secret", "verify-me", "g-key", "li-secret"


def meta_body(leadgen_id: str) -> bytes:
    return json.dumps(
        {
            "object": "page",
            "entry": [
                {
                    "id": "153125381133",
                    "time": 1732181400,
                    "changes": [
                        {
                            "field": "leadgen",
                            "value": {
                                "leadgen_id": leadgen_id,
                                "page_id": "153125381133",
                                "form_id": "123456",
                                "adgroup_id": "0",
                                "ad_id": "0",
                                "created_time": 1732181400,
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()


def sign(secret: str, body: bytes, prefix: bytes = b"") -> str:
    return hmac.new(secret.encode(), prefix + body, hashlib.sha256).hexdigest()


@pytest.fixture
async def graph() -> AsyncIterator[tuple[str, list[str]]]:
    """A local stand-in for the Graph API: fails the first call, then answers field_data."""
    calls: list[str] = []

    async def lead(request: web.Request) -> web.Response:
        calls.append(request.match_info["leadgen_id"])
        if len(calls) == 1:
            return web.json_response({"error": {"message": "temporarily unavailable"}}, status=500)
        return web.json_response(
            {
                "id": request.match_info["leadgen_id"],
                "created_time": "2026-11-21T09:30:00+0000",
                "field_data": [
                    {"name": "email", "values": ["Jane.Doe@Example.com"]},
                    {"name": "full_name", "values": ["Jane Doe"]},
                    {"name": "company_name", "values": ["Example GmbH"]},
                    {"name": "budget", "values": ["10k"]},
                ],
            }
        )

    app = web.Application()
    app.router.add_get("/v21.0/{leadgen_id}", lead)
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url("/v21.0")), calls
    await server.close()


@pytest.fixture
async def settings(
    broker: EmbeddedBroker, redis_url: str, suffix: str, graph: tuple[str, list[str]]
) -> CaptureSettings:
    settings = CaptureSettings(
        broker_url=broker.url,
        redis_url=redis_url,
        topic_suffix=suffix,
        api_keys="k",
        meta_app_secret=APP_SECRET,
        meta_verify_token=VERIFY,
        graph_url=graph[0],
        contact_fetch_backoff_seconds=0.05,
        contact_fetch_poll_seconds=0.05,
        google_key=GOOGLE_KEY,
        linkedin_client_secret=LI_SECRET,
    )
    await ensure_pipeline_topics(settings)
    return settings


@pytest.fixture
async def client(settings: CaptureSettings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


async def _read(broker: EmbeddedBroker, topic: str, at_least: int, within: float = 2) -> list[bytes]:
    records = await consume_until(
        broker.bootstrap_servers, topic, lambda r: len(r) >= at_least, within=within
    )
    return [r.value for r in records if r.value]


async def test_meta_handshake(client: Client) -> None:
    ok = await client.get(
        "/v1/webhooks/meta",
        params={"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158"},
    )
    assert ok.status == 200
    assert await ok.text() == "1158"
    bad = await client.get(
        "/v1/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": "no", "hub.challenge": "1"}
    )
    assert bad.status == 403


async def test_meta_lead_is_published_then_its_contact_and_a_replay_is_published_once(
    client: Client, settings: CaptureSettings, broker: EmbeddedBroker, graph: tuple[str, list[str]]
) -> None:
    body = meta_body("444444444444")
    headers = {"X-Hub-Signature-256": "sha256=" + sign(APP_SECRET, body), "Content-Type": "application/json"}
    first = await client.post("/v1/webhooks/meta", data=body, headers=headers)
    assert first.status == 200, await first.text()
    replay = await client.post("/v1/webhooks/meta", data=body, headers=headers)
    assert await replay.json() == {"status": "ok", "published": 0, "duplicates": 1}

    topic = settings.topic(TopicName.INTERACTIONS)
    stored = [Interaction.model_validate_json(v) for v in await _read(broker, topic, 3, within=2.5)]
    # The two are keyed differently (anonymous id, then e-mail), so they may sit on two partitions.
    assert sorted(i.type.value for i in stored) == ["ad_lead", "identify"]
    lead = next(i for i in stored if i.type.value == "ad_lead")
    contact = next(i for i in stored if i.type.value == "identify")
    assert lead.anonymous_id == contact.anonymous_id == "meta:444444444444"
    assert lead.properties["leadgen_id"] == "444444444444"
    assert contact.contact.email == "jane.doe@example.com"
    assert (contact.contact.first_name, contact.contact.last_name) == ("Jane", "Doe")
    assert contact.properties["answers"] == {"budget": "10k"}
    assert graph[1] == ["444444444444", "444444444444"]  # the first fetch failed and was retried


async def test_a_meta_change_that_cannot_be_read_leaves_the_rest_of_its_delivery_published(
    client: Client, settings: CaptureSettings, broker: EmbeddedBroker, graph: tuple[str, list[str]]
) -> None:
    """One leadgen change without a `leadgen_id` refused the whole delivery (422), and Meta sent it
    again, whole, for ever: the good lead beside it was never taken."""
    delivery = json.loads(meta_body("666666"))
    delivery["entry"][0]["changes"].append({"field": "leadgen", "value": {"page_id": "153125381133"}})
    body = json.dumps(delivery).encode()
    headers = {"X-Hub-Signature-256": "sha256=" + sign(APP_SECRET, body), "Content-Type": "application/json"}
    response = await client.post("/v1/webhooks/meta", data=body, headers=headers)
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["published"] == 1
    assert [problem["field"] for problem in answer["refused"]] == ["entry.0.changes.1.value.leadgen_id"]
    stored = [
        Interaction.model_validate_json(v)
        for v in await _read(broker, settings.topic(TopicName.INTERACTIONS), 1)
    ]
    assert [i.anonymous_id for i in stored if i.type.value == "ad_lead"] == ["meta:666666"]
    metrics = await (await client.get("/metrics")).text()
    assert 'leadpipe_capture_events_rejected_total{reason="invalid_platform_lead"} 1.0' in metrics


async def test_meta_wrong_signature_publishes_nothing(
    client: Client, settings: CaptureSettings, broker: EmbeddedBroker
) -> None:
    body = meta_body("555")
    for signature in ("sha256=" + sign("wrong", body), "", "sha1=abc"):
        response = await client.post(
            "/v1/webhooks/meta", data=body, headers={"X-Hub-Signature-256": signature}
        )
        assert response.status == 401
    assert await _read(broker, settings.topic(TopicName.INTERACTIONS), 1, within=1.5) == []


async def test_google_lead_maps_columns_and_marks_tests(
    client: Client, settings: CaptureSettings, broker: EmbeddedBroker
) -> None:
    lead = {
        "lead_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "user_column_data": [
            {"column_name": "Full Name", "string_value": "Max Mustermann", "column_id": "FULL_NAME"},
            {"column_name": "User Email", "string_value": "MAX@example.de", "column_id": "EMAIL"},
            {"column_name": "User Phone", "string_value": "+49 30 1234", "column_id": "PHONE_NUMBER"},
            {"column_name": "Company Name", "string_value": "Muster AG", "column_id": "COMPANY_NAME"},
            {"column_name": "Job Title", "string_value": "CTO", "column_id": "JOB_TITLE"},
            {"column_name": "Country", "string_value": "DE", "column_id": "COUNTRY"},
            {"column_name": "Budget", "string_value": "high", "column_id": "BUDGET"},
        ],
        "api_version": "1.0",
        "form_id": 40000000000,
        "campaign_id": 12345678901,
        "google_key": GOOGLE_KEY,
        "is_test": True,
        "gcl_id": "gclid-1",
        "adgroup_id": 20000000000,
        "creative_id": 30000000000,
    }
    wrong = await client.post("/v1/webhooks/google", json={**lead, "google_key": "nope"})
    assert wrong.status == 403
    record = await _google_lead_stored_once(client, broker, settings, lead)
    assert record.is_test is True
    assert record.contact.email == "max@example.de"
    assert (record.contact.first_name, record.contact.last_name) == ("Max", "Mustermann")
    assert (record.contact.company, record.contact.job_title, record.contact.country) == (
        "Muster AG",
        "CTO",
        "DE",
    )
    assert record.source.channel == "google_ads"
    assert record.properties["answers"] == {"BUDGET": "high"}


async def _google_lead_stored_once(
    client: Client, broker: EmbeddedBroker, settings: CaptureSettings, lead: dict[str, Any]
) -> Interaction:
    """Google retries a lead until it gets a 200: the first post publishes it, the replay nothing."""
    first = await client.post("/v1/webhooks/google", json=lead)
    assert first.status == 200, await first.text()
    replay = await client.post("/v1/webhooks/google", json=lead)
    assert (await replay.json())["duplicates"] == 1
    stored = await _read(broker, settings.topic(TopicName.INTERACTIONS), 2)
    assert len(stored) == 1
    return Interaction.model_validate_json(stored[0])


async def test_google_lead_with_the_longest_lead_id_is_acknowledged_once(
    client: Client, settings: CaptureSettings, broker: EmbeddedBroker
) -> None:
    """Google retries a lead until it gets a 200; a 128-character lead id used to answer 500 forever."""
    lead = {
        "lead_id": "L" * 128,
        "google_key": GOOGLE_KEY,
        "user_column_data": [{"column_id": "EMAIL", "string_value": "long@example.com"}],
    }
    record = await _google_lead_stored_once(client, broker, settings, lead)
    assert record.properties["google_lead_id"] == "L" * 128
    assert record.contact.email == "long@example.com"


async def test_linkedin_challenge_signature_and_deleted_lead(
    client: Client, settings: CaptureSettings, broker: EmbeddedBroker
) -> None:
    code = "890e4665-4dfe-4ab1-b689-ed553bceeed0"
    challenge = await client.get("/v1/webhooks/linkedin", params={"challengeCode": code})
    assert await challenge.json() == {
        "challengeCode": code,
        "challengeResponse": sign(LI_SECRET, code.encode()),
    }

    def note(action: str) -> bytes:
        return json.dumps(
            {
                "type": "LEAD_ACTION",
                "leadGenFormResponse": "urn:li:leadGenFormResponse:(urn:li:sponsoredCreative:1,ABC)",
                "leadGenForm": "urn:li:versionedLeadGenForm:(urn:li:leadGenForm:123,1)",
                "owner": {"sponsoredAccount": "urn:li:sponsoredAccount:123"},
                "associatedEntity": {"sponsoredCreative": "urn:li:sponsoredCreative:1"},
                "leadAction": action,
                "occuredAt": 1732181400000,
                "leadType": "SPONSORED",
            }
        ).encode()

    created, deleted = note("CREATED"), note("DELETED")
    bad = await client.post(
        "/v1/webhooks/linkedin", data=created, headers={"X-LI-Signature": sign("x", created)}
    )
    assert bad.status == 401
    for body in (created, deleted, deleted):
        signature = sign(LI_SECRET, body, b"hmacsha256=")
        response = await client.post(
            "/v1/webhooks/linkedin", data=body, headers={"X-LI-Signature": signature}
        )
        assert response.status == 200
    leads = await _read(broker, settings.topic(TopicName.INTERACTIONS), 2, within=2)
    erasures = [  # capture's own erasure_completed answer may follow on the same topic
        record
        for v in await _read(broker, settings.topic(TopicName.PRIVACY), 2, within=2)
        if (record := PrivacyRecord.model_validate_json(v)).kind.value != "erasure_completed"
    ]
    assert len(leads) == 1
    assert [e.kind.value for e in erasures] == ["erase"]
    assert erasures[0].lead_id == Interaction.model_validate_json(leads[0]).lead_id
    assert erasures[0].requested_by == "linkedin"

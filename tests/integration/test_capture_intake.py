"""What capture refuses at intake, and how, against the real broker and Redis: records too large to
publish (413, never 503), a sender's clock far ahead (422), webhook signatures that are not ASCII,
e-mails that are no address; and event ids published per API client."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas import Interaction, PrivacyRecord, TopicName
from services.capture import domain
from services.capture.auth import client_of
from services.capture.keys import SETTINGS
from services.capture.publisher import BrokerUnavailable, KafkaPublisher, RecordTooLarge
from services.capture.settings import CaptureSettings
from services.devstack.broker import EmbeddedBroker
from tests.capture_client import Client, started_client
from tests.cli import run_cli
from tests.kafka import consume_until

pytestmark = pytest.mark.integration

EVENT = {"type": "page_view", "occurred_at": "2026-11-21T09:30:00Z", "anonymous_id": "anon-1"}
META_SECRET, LI_SECRET, GOOGLE_KEY = "meta-secret", "li-secret", "g-key"


def _settings(broker: EmbeddedBroker, redis_url: str, suffix: str, **overrides: object) -> CaptureSettings:
    base: dict[str, object] = {
        "broker_url": broker.url,
        "redis_url": redis_url,
        "topic_suffix": suffix,
        "api_keys": "key-a,key-b",
        "admin_keys": "admin",
        "privacy_consumer": False,
        "meta_app_secret": META_SECRET,
        "linkedin_client_secret": LI_SECRET,
        "google_key": GOOGLE_KEY,
        "graph_url": "http://127.0.0.1:9/v21.0",  # nothing answers: the contact fetch stays local
    }
    return CaptureSettings(**{**base, **overrides})  # type: ignore[arg-type]


@pytest.fixture
async def settings(broker: EmbeddedBroker, redis_url: str, suffix: str) -> CaptureSettings:
    return _settings(broker, redis_url, suffix)


@pytest.fixture
async def client(settings: CaptureSettings) -> AsyncIterator[Client]:
    client = await started_client(settings)
    yield client
    await client.close()


@pytest.fixture
async def small(broker: EmbeddedBroker, redis_url: str, suffix: str) -> AsyncIterator[Client]:
    """A capture that publishes records of at most 4 KiB, its bodies up to the usual 1 MiB."""
    client = await started_client(_settings(broker, redis_url, suffix, max_record_bytes=4096))
    yield client
    await client.close()


def _topic(client: Client, name: TopicName) -> str:
    assert client.app is not None
    return client.app[SETTINGS].topic(name)


async def _read(broker: EmbeddedBroker, topic: str, at_least: int, within: float = 3) -> list[bytes]:
    records = await consume_until(
        broker.bootstrap_servers, topic, lambda r: len(r) >= at_least, within=within
    )
    return [r.value for r in records if r.value]


# --- 1. a record too large for the producer: 413 with its size and the limit --------------------------


async def test_an_event_whose_record_is_over_the_producers_limit_is_413_not_503(
    client: Client, broker: EmbeddedBroker
) -> None:
    """The body is under the 1 MiB body limit, and its record over the producer's limit (512 KiB by
    default): it was answered 503 "retry later", every time."""
    event = {**EVENT, "event_id": "big-1", "consent": {"marketing_email": True}, "properties": {"blob": ""}}
    room = 1024 * 1024 - len(json.dumps(event, separators=(",", ":")).encode()) - 10
    event["properties"] = {"blob": "x" * room}
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = {"X-API-Key": "key-a", "Content-Type": "application/json"}
    for _ in range(2):  # the same answer again: nothing was claimed or stored
        response = await client.post("/v1/events", data=body, headers=headers)
        assert response.status == 413, await response.text()
        assert "Retry-After" not in response.headers
        problem = await response.json()
        assert problem["error"] == "record_too_large"
        assert "over the limit of 524288 bytes" in problem["message"]
        assert problem["fields"][0]["reason"].startswith("the record is 10")
    small = await client.post("/v1/events", json={**EVENT, "event_id": "big-1"}, headers=headers)
    assert small.status == 202 and (await small.json())["duplicate"] is False  # the id was never used
    assert len(await _read(broker, _topic(client, TopicName.INTERACTIONS), 2, within=2)) == 1
    assert await _read(broker, _topic(client, TopicName.PRIVACY), 1, within=1) == []  # no consent either
    metrics = await (await client.get("/metrics")).text()
    assert 'leadpipe_capture_events_rejected_total{reason="record_too_large"} 2.0' in metrics


async def test_one_oversized_event_in_a_batch_is_refused_alone(small: Client, broker: EmbeddedBroker) -> None:
    events = [
        {**EVENT, "event_id": "b-1", "anonymous_id": "a-1"},
        {**EVENT, "event_id": "b-2", "anonymous_id": "a-2", "properties": {"blob": "x" * 6000}},
        {**EVENT, "event_id": "b-3", "anonymous_id": "a-3", "consent": {"marketing_email": True}},
    ]
    response = await small.post("/v1/events:batch", json={"events": events}, headers={"X-API-Key": "key-a"})
    assert response.status == 200, await response.text()
    body = await response.json()
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "accepted"]
    assert (body["accepted"], body["refused"]) == (2, 1)
    refused = body["results"][1]
    assert refused["error"] == "record_too_large"
    assert refused["fields"][0]["field"] == "(event)"
    assert "over the limit of 4096 bytes" in refused["fields"][0]["reason"]
    stored = [
        Interaction.model_validate_json(v)
        for v in await _read(broker, _topic(small, TopicName.INTERACTIONS), 3)
    ]
    assert sorted(i.anonymous_id or "" for i in stored) == ["a-1", "a-3"]


async def test_a_webhook_lead_too_large_to_publish_is_413(small: Client) -> None:
    lead = {
        "lead_id": "g-1",
        "google_key": GOOGLE_KEY,
        "user_column_data": [{"column_id": f"Q{n}", "string_value": "x" * 2000} for n in range(3)],
    }
    response = await small.post("/v1/webhooks/google", json=lead)
    assert response.status == 413, await response.text()
    assert (await response.json())["error"] == "record_too_large"


async def test_an_import_row_too_large_or_dated_far_ahead_is_a_row_error(
    small: Client, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Each is refused once, with its reason; the import does not retry them and the others go on.
    An old row is taken: a list of last year's leads is what imports are for."""
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "email,occurred_at,notes\n"
        "ann@example.com,2026-11-21T09:30:00Z,ok\n"
        f"bob@example.com,2026-11-21T09:30:00Z,{'x' * 5000}\n"
        "carl@example.com,2062-11-21T09:30:00Z,typed for 2026\n"
        "dana@example.com,2019-03-01T10:00:00Z,an old lead\n",
        encoding="utf-8",
    )
    url = str(small.make_url("/")).rstrip("/")
    code, out, err = await run_cli(
        "import", str(leads), "--source", "event", "--campaign", "fair", "--url", url, "--api-key", "key-a"
    )
    assert code == 1, out + err
    assert "2 published, 0 already imported, 2 refused, 0 failed" in out
    assert "line 3: (event): the record is" in out and "over the limit of 4096 bytes" in out
    assert "line 4: occurred_at: " in out and "a sender's clock may run at most 1 h ahead" in out
    stored = [
        Interaction.model_validate_json(v)
        for v in await _read(broker, _topic(small, TopicName.INTERACTIONS), 2)
    ]
    assert sorted(i.contact.email or "" for i in stored) == ["ann@example.com", "dana@example.com"]


async def test_the_publisher_refuses_an_oversized_record_at_once_and_sends_the_others(
    broker: EmbeddedBroker, suffix: str
) -> None:
    topic = f"publisher-size{suffix}"
    publisher = KafkaPublisher(broker.bootstrap_servers, timeout=10)
    records = [(b"a", b"first"), (b"b", b"x" * (1024 * 1024 + 1)), (b"c", b"third")]
    try:
        acks = await asyncio.wait_for(publisher.publish_many(topic, records), 5)
    finally:
        await publisher.close()
    assert isinstance(acks[1], RecordTooLarge) and not isinstance(acks[1], BrokerUnavailable)
    assert acks[1].limit == 1024 * 1024 and acks[1].size > 1024 * 1024
    assert not isinstance(acks[0], BaseException) and not isinstance(acks[2], BaseException)


# --- 2. event ids published per API client ------------------------------------------------------------


async def test_two_clients_same_event_id_publish_different_event_ids(
    client: Client, broker: EmbeddedBroker
) -> None:
    """enrich dedupes by event id per lead: one id for both clients' events dropped the second
    client's event (and its consent record) as a duplicate of the first's."""
    consenting = {"marketing_email": True, "text_version": "2026-01"}
    a = {
        **EVENT,
        "event_id": "1",
        "type": "demo_request",
        "contact": {"email": "jane@acme.de"},
        "consent": consenting,
    }
    b = {**a, "type": "pricing_page_view", "occurred_at": "2026-11-21T10:00:00Z"}
    one = await (await client.post("/v1/events", json=a, headers={"X-API-Key": "key-a"})).json()
    two = await (await client.post("/v1/events", json=b, headers={"X-API-Key": "key-b"})).json()
    again = await (await client.post("/v1/events", json=a, headers={"X-API-Key": "key-a"})).json()
    batch = await client.post("/v1/events:batch", json={"events": [b, b]}, headers={"X-API-Key": "key-b"})
    results = (await batch.json())["results"]

    assert one["event_id"] == domain.published_event_id("1", client_of("key-a"))
    assert two["event_id"] == domain.published_event_id("1", client_of("key-b"))
    assert one["event_id"] != two["event_id"] and one["lead_id"] == two["lead_id"]
    assert (again["duplicate"], again["event_id"]) == (True, one["event_id"])  # a retry: the same id
    assert [(r["status"], r["event_id"]) for r in results] == [("duplicate", two["event_id"])] * 2
    stored = [
        Interaction.model_validate_json(v)
        for v in await _read(broker, _topic(client, TopicName.INTERACTIONS), 2)
    ]
    assert sorted(i.event_id for i in stored) == sorted([one["event_id"], two["event_id"]])
    consents = [
        PrivacyRecord.model_validate_json(v)
        for v in await _read(broker, _topic(client, TopicName.PRIVACY), 2)
    ]
    assert sorted(c.event_id for c in consents) == sorted(
        [f"{one['event_id']}-consent", f"{two['event_id']}-consent"]
    )


# --- 3. a sender's clock far ahead ------------------------------------------------------------------


async def test_an_occurred_at_far_ahead_is_refused_naming_the_field(client: Client) -> None:
    headers = {"X-API-Key": "key-a"}
    for year in ("2062", "9999"):
        response = await client.post(
            "/v1/events", json={**EVENT, "occurred_at": f"{year}-11-21T09:30:00Z"}, headers=headers
        )
        assert response.status == 422
        (problem,) = (await response.json())["fields"]
        assert problem["field"] == "occurred_at"
        assert "after capture received it; a sender's clock may run at most 1 h ahead" in problem["reason"]
    batch = await client.post(
        "/v1/events:batch",
        json={
            "events": [
                {**EVENT, "occurred_at": "2062-11-21T09:30:00Z"},
                {**EVENT, "occurred_at": "2001-01-01T00:00:00Z"},
            ]
        },
        headers=headers,
    )
    results = (await batch.json())["results"]
    assert [r["status"] for r in results] == ["rejected", "accepted"]
    assert results[0]["fields"][0]["field"] == "occurred_at"


async def test_the_clock_tolerance_is_a_setting(broker: EmbeddedBroker, redis_url: str, suffix: str) -> None:
    soon = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    client = await started_client(_settings(broker, redis_url, suffix, max_clock_ahead_seconds=60))
    try:
        response = await client.post(
            "/v1/events", json={**EVENT, "occurred_at": soon}, headers={"X-API-Key": "key-a"}
        )
        assert response.status == 422
        assert "at most 1 min ahead" in (await response.json())["fields"][0]["reason"]
    finally:
        await client.close()


async def test_a_meta_lead_dated_far_ahead_is_published_at_its_receive_time(
    client: Client, broker: EmbeddedBroker
) -> None:
    """Ad leads are never refused for a bad value (Meta would deliver the same time again): the lead
    is kept, dated when capture received it, and Meta's time stays in its properties."""
    value = {"leadgen_id": "777", "page_id": "1", "form_id": "2", "created_time": 2931849000}
    body = json.dumps(
        {"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": value}]}]}
    ).encode()
    signature = hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = await client.post(
        "/v1/webhooks/meta", data=body, headers={"X-Hub-Signature-256": "sha256=" + signature}
    )
    assert response.status == 200, await response.text()
    (raw,) = await _read(broker, _topic(client, TopicName.INTERACTIONS), 1)
    lead = Interaction.model_validate_json(raw)
    assert lead.occurred_at == lead.received_at
    assert lead.properties["invalid_fields"] == {"created_time": 2931849000}


# --- 4. webhook signatures that are not ASCII --------------------------------------------------------


async def test_a_non_ascii_webhook_signature_is_401_not_500(client: Client) -> None:
    garbled = "sha256=\u00e9".encode().decode("latin-1")  # what aiohttp hands over for UTF-8 bytes
    meta = await client.post(
        "/v1/webhooks/meta", data=b'{"object":"page","entry":[]}', headers={"X-Hub-Signature-256": garbled}
    )
    linkedin = await client.post("/v1/webhooks/linkedin", data=b"{}", headers={"X-LI-Signature": garbled[7:]})
    assert (meta.status, linkedin.status) == (401, 401)
    assert (await meta.json())["error"] == (await linkedin.json())["error"] == "invalid_signature"


# --- 5. e-mails that are no address ------------------------------------------------------------------


async def test_withdrawal_and_erasure_refuse_an_email_that_is_no_address(
    client: Client, broker: EmbeddedBroker
) -> None:
    for email in ("jane.doe@example,com", "jane.doe at example.com"):
        withdraw = await client.post(
            "/v1/consent/withdraw", json={"email": email}, headers={"X-API-Key": "key-a"}
        )
        erase = await client.post("/v1/privacy/erase", json={"email": email}, headers={"X-API-Key": "admin"})
        for response in (withdraw, erase):
            assert response.status == 422
            (problem,) = (await response.json())["fields"]
            assert problem["field"] == "email" and "not a valid email address" in problem["reason"]
    fine = await client.post(
        "/v1/consent/withdraw", json={"email": "Jane.Doe@Example.com"}, headers={"X-API-Key": "key-a"}
    )
    assert fine.status == 202
    assert len(await _read(broker, _topic(client, TopicName.PRIVACY), 2, within=2)) == 1

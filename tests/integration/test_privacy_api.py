"""Capture's privacy desk against the real broker and Redis: admin keys, erasure of capture's own data
(consent proof pseudonymised and kept, idempotency answers scrubbed), the erasure log, and export."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from schemas import PrivacyRecord, TopicName
from schemas.base import utcnow
from schemas.privacy import PrivacyRequestKind
from services.capture import consent
from services.capture.app import create_app
from services.capture.auth import client_of
from services.capture.domain import lead_identity
from services.capture.privacy_api import PrivacyDesk
from services.capture.publisher import KafkaPublisher
from services.capture.settings import CaptureSettings
from services.devstack.broker import EmbeddedBroker
from services.privacy.metrics import privacy_metrics
from services.privacy.policy import load_policy
from services.runtime import consent_tokens
from services.runtime.api_keys import hash_api_key
from services.runtime.codec import encode
from services.runtime.topics import ensure_pipeline_topics
from tests.kafka import consume_until

pytestmark = pytest.mark.integration
Client = TestClient[web.Request, web.Application]
CLIENT_KEY = {"X-API-Key": "client-key"}
ADMIN = {"X-API-Key": "admin-old"}
ROTATED = {"X-API-Key": "admin-new"}
SALT = "test-privacy-salt"


@pytest.fixture
async def settings(broker: EmbeddedBroker, redis_url: str, suffix: str) -> CaptureSettings:
    built = CaptureSettings(
        broker_url=broker.url,
        redis_url=redis_url,
        topic_suffix=suffix,
        api_keys="client-key",
        admin_keys=f"admin-old,{hash_api_key('admin-new')}",  # rotation: both valid, one given hashed
        privacy_salt=SALT,
        privacy_services="enrich",
        export_timeout=1.5,
        consent_secret="consent-secret",
    )
    await ensure_pipeline_topics(built)
    return built


@pytest.fixture
async def client(settings: CaptureSettings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 40.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


async def privacy_records(broker: EmbeddedBroker, settings: CaptureSettings) -> list[PrivacyRecord]:
    topic = settings.topic(TopicName.PRIVACY)
    records = await consume_until(broker.bootstrap_servers, topic, lambda r: False, within=1.5)
    return [PrivacyRecord.model_validate_json(r.value) for r in records if r.value]


async def test_privacy_endpoints_need_an_admin_key(client: Client) -> None:
    body = {"email": "someone@example.com"}
    assert (await client.post("/v1/privacy/erase", json=body)).status == 401
    refused = await client.post("/v1/privacy/erase", json=body, headers=CLIENT_KEY)
    assert refused.status == 403
    assert (await refused.json())["error"] == "admin_key_required"
    assert (await client.post("/v1/privacy/export", json=body, headers=CLIENT_KEY)).status == 403
    assert (await client.get("/v1/privacy/erasures/x", headers=CLIENT_KEY)).status == 403
    for key in (ADMIN, ROTATED):
        assert (await client.post("/v1/privacy/erase", json=body, headers=key)).status == 202
    both = await client.post("/v1/privacy/erase", json={**body, "lead_id": "e-" + "0" * 24}, headers=ADMIN)
    assert both.status == 422
    bad_id = await client.post("/v1/privacy/erase", json={"lead_id": "jane@example.com"}, headers=ADMIN)
    assert bad_id.status == 422
    for path in ("/v1/privacy/erase", "/v1/privacy/export"):  # whitespace names nobody (it was a 500)
        for blank in ({"email": "   "}, {"anonymous_id": " "}):
            assert (await client.post(path, json=blank, headers=ADMIN)).status == 422
    # An admin key may also do what an API key does.
    event = {"type": "page_view", "occurred_at": "2026-11-21T09:30:00Z", "anonymous_id": "anon-admin"}
    assert (await client.post("/v1/events", json=event, headers=ADMIN)).status == 202


async def test_erasure_pseudonymises_consent_proof_and_scrubs_idempotency(
    client: Client, settings: CaptureSettings, broker: EmbeddedBroker, redis: Redis
) -> None:
    email = "erase.me@example.com"
    lead_id, _ = lead_identity(email, None)
    event = {
        "event_id": "ev-consenting",
        "type": "form_submit",
        "occurred_at": "2026-11-21T09:30:00Z",
        "contact": {"email": email, "first_name": "Erika"},
        "consent": {"marketing_email": True, "text_version": "2026-01"},
    }
    assert (await client.post("/v1/events", json=event, headers=CLIENT_KEY)).status == 202
    token = consent_tokens.make_token(lead_id, "2026-01", utcnow() + timedelta(days=1), "consent-secret")
    assert (await client.post("/v1/consent/confirm", data={"token": token})).status == 200

    subject = consent.subject_of(lead_id, SALT)
    proof_key = f"leadpipe:capture{settings.topic_suffix}:consent:{subject}"

    async def proof() -> consent.ConsentProof | None:
        raw = await redis.get(proof_key)
        found = consent.ConsentProof.model_validate_json(raw) if raw else None
        return found if found is not None and len(found.events) == 2 else None

    before = await eventually(proof)
    assert before.lead_id == lead_id
    assert [e.kind.value for e in before.events] == ["consent_given", "consent_confirmed"]
    sender = f"event:{client_of('client-key')}:ev-consenting"  # an event id is its client's
    seen_key = f"leadpipe:capture{settings.topic_suffix}:seen:{sender}"
    assert lead_id.encode() in (await redis.get(seen_key) or b"")

    answer = await client.post("/v1/privacy/erase", json={"email": " Erase.Me@Example.com "}, headers=ADMIN)
    assert answer.status == 202, await answer.text()
    accepted = await answer.json()
    assert accepted["lead_id"] == lead_id

    async def capture_done() -> dict[str, Any] | None:
        log = await client.get(f"/v1/privacy/erasures/{accepted['request_id']}", headers=ADMIN)
        body: dict[str, Any] = await log.json()
        return body if "capture" in body.get("completed", {}) else None

    entry = await eventually(capture_done)
    assert entry["pending"] == ["enrich"] and not entry["complete"]
    # The privacy consumer's lag shows on /metrics, per partition of privacy.requests.
    exposition = await (await client.get("/metrics")).text()
    topic = settings.topic(TopicName.PRIVACY)
    lags = [line for line in exposition.splitlines() if line.startswith("leadpipe_consumer_lag{")]
    assert lags and all('service="capture"' in line and f'topic="{topic}"' in line for line in lags)
    assert entry["requested_by"].startswith("admin")
    # The event, its consent record and the confirmation link each left an idempotency answer.
    assert entry["completed"]["capture"]["erased"] == {
        "consent_proof_pseudonymised": 1,
        "idempotency_answers": 3,
    }
    for key in await redis.keys(f"leadpipe:capture{settings.topic_suffix}:seen:*"):
        assert lead_id.encode() not in (await redis.get(key) or b"")
    kept = consent.ConsentProof.model_validate_json(await redis.get(proof_key) or b"")
    assert kept.lead_id is None and kept.pseudonymised_at is not None
    assert kept.events == before.events  # the proof itself is kept
    assert 0 < await redis.ttl(proof_key) <= int(timedelta(days=1095).total_seconds())
    scrubbed = await redis.get(seen_key) or b""
    assert lead_id.encode() not in scrubbed and b'"erased": true' in scrubbed
    # A retry of the erased sender event stays a duplicate: it does not bring the lead back.
    again = await client.post("/v1/events", json=event, headers=CLIENT_KEY)
    assert (await again.json()).get("duplicate") is True

    done = [r for r in await privacy_records(broker, settings) if r.kind.value == "erasure_completed"]
    assert [(r.service, r.in_reply_to, r.lead_id) for r in done] == [
        ("capture", accepted["request_id"], lead_id)
    ]
    unknown = await client.get("/v1/privacy/erasures/erase-unknown", headers=ADMIN)
    assert unknown.status == 404


async def test_export_reports_capture_data_and_the_services_that_did_not_answer(
    client: Client, settings: CaptureSettings, broker: EmbeddedBroker, redis: Redis
) -> None:
    email = "export.me@example.com"
    lead_id, _ = lead_identity(email, None)
    event = {
        "event_id": "ev-export",
        "type": "form_submit",
        "occurred_at": "2026-11-21T09:30:00Z",
        "contact": {"email": email},
        "consent": {"marketing_email": True},
    }
    assert (await client.post("/v1/events", json=event, headers=CLIENT_KEY)).status == 202
    proof_key = f"leadpipe:capture{settings.topic_suffix}:consent:{consent.subject_of(lead_id, SALT)}"
    await eventually(lambda: redis.exists(proof_key))

    answer = await client.post("/v1/privacy/export", json={"email": email}, headers=ROTATED)
    assert answer.status == 200, await answer.text()
    body = await answer.json()
    assert (body["lead_id"], body["complete"], body["missing"]) == (lead_id, False, ["enrich"])
    own = body["services"]["capture"]
    sender = f"event:{client_of('client-key')}:ev-export"
    assert sorted(own["idempotency_sender_ids"]) == [f"consent:{sender}", sender]
    assert own["consent_proof"]["lead_id"] == lead_id
    requests = [r for r in await privacy_records(broker, settings) if r.kind.value == "export"]
    assert [r.lead_id for r in requests] == [lead_id] and requests[0].answer_by is not None
    assert not await redis.keys(f"leadpipe:privacy{settings.topic_suffix}:export:*")


async def test_a_fetch_of_consent_records_keeps_their_order_around_an_erasure(
    broker: EmbeddedBroker, settings: CaptureSettings, redis: Redis
) -> None:
    """A fetch's consent records are stored together, each subject's in order and once per event id;
    an erasure between them pseudonymises what came before it and a consent after it names the lead
    again; an unreadable record is counted and passed over."""
    await ensure_pipeline_topics(settings)
    publisher = KafkaPublisher(settings.bootstrap_servers, 5.0)
    desk = PrivacyDesk(
        settings=settings,
        redis=redis,
        publisher=publisher,
        policy=load_policy(settings.privacy_file),
        metrics=privacy_metrics("capture", CollectorRegistry()),
    )
    at = utcnow()
    erika, max_ = "lead-erika" + settings.topic_suffix, "lead-max" + settings.topic_suffix

    def given(lead_id: str, n: int) -> PrivacyRecord:
        return PrivacyRecord(
            event_id=f"{lead_id}-{n}",
            occurred_at=at + timedelta(seconds=n),
            lead_id=lead_id,
            kind=PrivacyRequestKind.CONSENT_GIVEN,
            requested_by="data-subject",
            consent_text_version="2026-01",
            consent_source="form",
        )

    erase = PrivacyRecord(
        event_id="erase-erika" + settings.topic_suffix,
        occurred_at=at,
        lead_id=erika,
        kind=PrivacyRequestKind.ERASE,
        requested_by="admin",
    )
    fetch = [
        given(erika, 1),
        given(max_, 1),
        given(erika, 1),
        b"{not json",
        given(erika, 2),
        erase,
        given(erika, 3),
    ]
    try:
        await desk.handle([r if isinstance(r, bytes) else encode(r) for r in fetch])
    finally:
        await publisher.close()

    async def proof(lead_id: str) -> consent.ConsentProof:
        key = desk.consent_key(consent.subject_of(lead_id, SALT))
        assert 0 < await redis.ttl(key) <= int(desk.policy.consent_proof_retention.total_seconds())
        return consent.ConsentProof.model_validate_json(await redis.get(key) or b"")

    erika_proof, max_proof = await proof(erika), await proof(max_)
    assert [e.event_id for e in erika_proof.events] == [f"{erika}-1", f"{erika}-2", f"{erika}-3"]
    assert erika_proof.lead_id == erika  # named again by the consent after the erasure
    assert erika_proof.pseudonymised_at is not None  # the erasure saw the first two stored
    assert [e.event_id for e in max_proof.events] == [f"{max_}-1"] and max_proof.pseudonymised_at is None
    assert desk.metrics.requests.labels("capture", "unreadable")._value.get() == 1
    assert desk.metrics.requests.labels("capture", "consent_given")._value.get() == 4


async def test_the_idempotency_entries_naming_a_lead_are_found_across_scan_pages(
    settings: CaptureSettings, redis: Redis
) -> None:
    """The scan reads 1,000 keys a page and filters each page inside Redis: entries naming the lead
    are found on every page, and neither a lead id that merely contains it nor an unreadable value
    is taken for it."""
    desk = PrivacyDesk(
        settings=settings,
        redis=redis,
        publisher=KafkaPublisher(settings.bootstrap_servers, 5.0),
        policy=load_policy(settings.privacy_file),
        metrics=privacy_metrics("capture", CollectorRegistry()),
    )
    prefix = desk.idempotency_pattern()[:-1]
    lead = "e-wanted" + settings.topic_suffix
    mine = {f"event:ev-{i}" for i in (3, 1_500, 2_999)}
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(3_000):
            sender = f"event:ev-{i}"
            owner = lead if sender in mine else f"{lead}-{i}" if i % 2 else f"e-other-{i}"
            pipe.set(prefix + sender, json.dumps({"lead_id": owner, "offset": i}), ex=600)
        pipe.set(prefix + "event:broken", f"{{not json {lead}", ex=600)
        await pipe.execute()
    exported = await desk.own_export(lead)
    assert set(exported["idempotency_sender_ids"]) == mine

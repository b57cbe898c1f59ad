"""Web forms (urlencoded and JSON, honeypot, redirect) and double opt-in consent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from schemas import Interaction, PrivacyRecord, TopicName
from schemas.base import utcnow
from services.capture import consent
from services.capture.app import create_app
from services.capture.auth import client_of
from services.capture.settings import CaptureSettings
from services.devstack.broker import EmbeddedBroker
from services.runtime.consent_tokens import make_token
from services.runtime.topics import ensure_pipeline_topics
from tests.kafka import consume_until

pytestmark = pytest.mark.integration
Client = TestClient[object, object]
SECRET = "consent-secret"


@pytest.fixture
async def settings(broker: EmbeddedBroker, redis_url: str, suffix: str) -> CaptureSettings:
    settings = CaptureSettings(
        broker_url=broker.url, redis_url=redis_url, topic_suffix=suffix, api_keys="k", consent_secret=SECRET
    )
    await ensure_pipeline_topics(settings)
    return settings


@pytest.fixture
async def client(settings: CaptureSettings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


async def _values(broker: EmbeddedBroker, topic: str, at_least: int) -> list[bytes]:
    records = await consume_until(broker.bootstrap_servers, topic, lambda r: len(r) >= at_least, within=2)
    return [r.value for r in records if r.value]


async def test_forms_map_fields_trap_bots_and_record_consent(
    client: Client, settings: CaptureSettings, broker: EmbeddedBroker
) -> None:
    urlencoded = {
        "email": "Ann@Example.com",
        "firstname": "Ann",
        "company": "Acme",
        "newsletter": "on",
        "utm_campaign": "fair-2026",
        "message": "call me",
    }
    response = await client.post("/v1/forms/contact-us", data=urlencoded)
    assert response.status == 202, await response.text()
    demo = await client.post(
        "/v1/forms/demo", data={"work_email": "bob@example.com", "role": "CEO"}, allow_redirects=False
    )
    assert demo.status == 303
    assert demo.headers["Location"] == "/thanks"
    as_json = await client.post("/v1/forms/demo", json={"work_email": "cy@example.com", "organisation": "C"})
    assert as_json.status == 202
    bot = await client.post("/v1/forms/contact-us", data={**urlencoded, "website": "http://spam"})
    assert bot.status == 202  # answered like a person, so the bot learns nothing
    invalid = await client.post("/v1/forms/contact-us", data={"email": "nope"})
    assert invalid.status == 422
    assert (await client.post("/v1/forms/nope", data=urlencoded)).status == 404

    stored = [
        Interaction.model_validate_json(v)
        for v in await _values(broker, settings.topic(TopicName.INTERACTIONS), 4)
    ]
    assert len(stored) == 3
    ann = next(i for i in stored if i.contact.email == "ann@example.com")
    assert (ann.type.value, ann.contact.company, ann.source.utm_campaign) == (
        "form_submit",
        "Acme",
        "fair-2026",
    )
    assert ann.consent.marketing_email is True
    assert ann.properties["fields"] == {"message": "call me"}
    assert {i.type.value for i in stored} == {"form_submit", "demo_request"}

    privacy = [
        PrivacyRecord.model_validate_json(v)
        for v in await _values(broker, settings.topic(TopicName.PRIVACY), 2)
    ]
    assert [(p.kind.value, p.lead_id, p.consent_text_version, p.consent_source) for p in privacy] == [
        ("consent_given", ann.lead_id, "2026-01", "form")
    ]
    # the proof names the client's address only as a salted hash
    salt = settings.privacy_salt.get_secret_value()
    assert privacy[0].ip_hash == consent.hash_ip("127.0.0.1", salt) is not None


async def test_an_unreadable_form_body_is_a_400_naming_the_body(client: Client) -> None:
    """Bodies aiohttp cannot parse (the first found by schemathesis) used to answer 500."""
    broken = [
        ("multipart/form-data", b"token=x"),  # no boundary
        ("multipart/form-data; boundary=zz", b"--zz\r\nbroken header\r\n\r\nx\r\n--zz--\r\n"),
        ("application/x-www-form-urlencoded; charset=nope", b"token=x"),
    ]
    for path in ("/v1/forms/demo", "/v1/consent/confirm"):
        for content_type, data in broken:
            answer = await client.post(path, data=data, headers={"Content-Type": content_type})
            assert answer.status == 400, (path, content_type, await answer.text())
            body = await answer.json()
            assert body["error"] == "invalid_form" and body["fields"][0]["field"] == "(body)"


async def test_a_resubmitted_form_is_one_lead_for_seconds_not_for_the_dedupe_window(
    settings: CaptureSettings, broker: EmbeddedBroker, redis_url: str
) -> None:
    """A double click is one lead; the same request sent again after the form's short window is a new
    one (it used to vanish for the 36 h event-id window). Event ids keep their long window."""
    short = CaptureSettings(
        broker_url=broker.url,
        redis_url=redis_url,
        topic_suffix=settings.topic_suffix,
        api_keys="k",
        form_resubmit_seconds=1,
    )
    form = {"email": "sam@example.com", "firstname": "Sam", "newsletter": "on"}
    redis = Redis.from_url(redis_url)
    async with TestClient(TestServer(create_app(short))) as client:
        first = await client.post("/v1/forms/contact-us", json=form)
        double_click = await client.post("/v1/forms/contact-us", json=form)
        assert (first.status, double_click.status) == (202, 202)
        assert (await double_click.json())["duplicate"] is True
        form_keys = [
            k async for k in redis.scan_iter(f"leadpipe:capture{settings.topic_suffix}:seen:*form:*")
        ]
        assert len(form_keys) == 2  # the interaction's and its consent record's
        assert all(0 < ms <= 1000 for ms in [await redis.pttl(k) for k in form_keys])
        event = {"event_id": "ev-1", "type": "page_view", "occurred_at": "2026-11-21T09:30:00Z"}
        sent = await client.post(
            "/v1/events", json={**event, "anonymous_id": "a-1"}, headers={"X-API-Key": "k"}
        )
        assert sent.status == 202
        event_key = f"leadpipe:capture{settings.topic_suffix}:seen:event:{client_of('k')}:ev-1"
        assert await redis.ttl(event_key) > settings.dedupe_window_seconds - 60
        await asyncio.sleep(1.5)
        next_day = await client.post("/v1/forms/contact-us", json=form)
        assert next_day.status == 202
        assert (await next_day.json())["duplicate"] is False
    await redis.aclose()
    forms = [
        Interaction.model_validate_json(v)
        for v in await _values(broker, settings.topic(TopicName.INTERACTIONS), 4)
        if b"form_submit" in v
    ]
    assert len(forms) == 2 and forms[0].event_id != forms[1].event_id
    consents = await _values(broker, settings.topic(TopicName.PRIVACY), 3)
    assert len(consents) == 2


async def test_every_value_of_a_field_sent_several_times_is_kept(
    client: Client, settings: CaptureSettings, broker: EmbeddedBroker
) -> None:
    """A group of checkboxes or a multi-select sends a field once per value; only the last was kept
    from a urlencoded body, and none from a JSON list."""
    checked = [("email", "kim@example.com"), ("interest", "pricing"), ("interest", "security")]
    assert (await client.post("/v1/forms/contact-us", data=checked)).status == 202
    listed = {"email": "lee@example.com", "interest": ["pricing", "security"], "budget": None}
    assert (await client.post("/v1/forms/contact-us", json=listed)).status == 202
    two_addresses = [("email", "kim@example.com"), ("email", "lee@example.com")]
    refused = await client.post("/v1/forms/contact-us", data=two_addresses)
    assert refused.status == 422  # a mapped field with two values is not a contact we can guess
    assert (await refused.json())["fields"][0]["field"] == "email"  # the form's name for it
    topic = settings.topic(TopicName.INTERACTIONS)
    records = await consume_until(broker.bootstrap_servers, topic, lambda r: len(r) >= 2, within=15)
    stored = [Interaction.model_validate_json(r.value) for r in records if r.value]
    assert {i.contact.email: i.properties["fields"] for i in stored} == {  # two leads: two partitions
        "kim@example.com": {"interest": "pricing, security"},
        "lee@example.com": {"interest": "pricing, security", "budget": ""},
    }


def test_the_form_window_is_a_capture_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPTURE_FORM_RESUBMIT_SECONDS", "30")
    assert CaptureSettings().form_resubmit_seconds == 30
    monkeypatch.delenv("CAPTURE_FORM_RESUBMIT_SECONDS")
    assert 10 <= CaptureSettings().form_resubmit_seconds <= 300 < CaptureSettings().dedupe_window_seconds


async def test_an_event_with_the_longest_event_id_and_consent_is_accepted(
    client: Client, settings: CaptureSettings, broker: EmbeddedBroker
) -> None:
    """The consent record's id derives from the event's: at 128 characters it must still fit, alone
    and in a batch, and a retry must give the same consent record id."""
    event = {
        "event_id": "x" * 128,
        "type": "form_submit",
        "occurred_at": "2026-11-21T09:30:00Z",
        "contact": {"email": "long.id@example.com"},
        "consent": {"marketing_email": True, "text_version": "2026-01"},
    }
    single = await client.post("/v1/events", json=event, headers={"X-API-Key": "k"})
    assert single.status == 202, await single.text()
    batch = await client.post(
        "/v1/events:batch",
        json={"events": [{**event, "event_id": "y" * 128}, {**event, "event_id": "y" * 127}]},
        headers={"X-API-Key": "k"},
    )
    assert batch.status == 200, await batch.text()
    assert (await batch.json())["accepted"] == 2
    privacy = [
        PrivacyRecord.model_validate_json(v)
        for v in await _values(broker, settings.topic(TopicName.PRIVACY), 4)
    ]
    assert len(privacy) == 3
    assert len({p.event_id for p in privacy}) == 3
    assert all(p.kind.value == "consent_given" and len(p.event_id) <= 128 for p in privacy)


async def test_double_opt_in_confirm_and_withdraw(
    client: Client, settings: CaptureSettings, broker: EmbeddedBroker
) -> None:
    """Following the link (GET, or a scanner's HEAD) only shows the button; its POST confirms."""
    token = make_token("e-lead1", "2026-01", utcnow() + timedelta(days=1), SECRET)
    page = await client.get("/v1/consent/confirm", params={"token": token})
    assert (page.status, page.content_type) == (200, "text/html")
    html = await page.text()
    assert '<form method="post" action="/v1/consent/confirm">' in html
    assert f'<input type="hidden" name="token" value="{token}">' in html
    scanned = make_token("e-scanned", "2026-01", utcnow() + timedelta(days=1), SECRET)
    assert (await client.head("/v1/consent/confirm", params={"token": scanned})).status == 200
    assert (await client.get("/v1/consent/confirm", params={"token": scanned})).status == 200
    ok = await client.post("/v1/consent/confirm", data={"token": token})
    assert await ok.json() == {"status": "confirmed", "lead_id": "e-lead1"}
    in_a_browser = await client.post(
        "/v1/consent/confirm", data={"token": token}, headers={"Accept": "text/html,*/*;q=0.8"}
    )
    assert (in_a_browser.status, in_a_browser.content_type) == (200, "text/html")
    assert "confirmed" in await in_a_browser.text()
    forged = make_token("e-lead2", "2026-01", utcnow() + timedelta(days=1), "other-secret")
    expired = make_token("e-lead1", "2026-01", utcnow() - timedelta(seconds=1), SECRET)
    for bad, status, error in ((forged, 400, "token_bad_signature"), (expired, 410, "token_expired")):
        shown = await client.get("/v1/consent/confirm", params={"token": bad})
        assert (shown.status, (await shown.json())["error"]) == (status, error)
        posted = await client.post("/v1/consent/confirm", data={"token": bad})
        assert (posted.status, (await posted.json())["error"]) == (status, error)
    assert (await client.post("/v1/consent/confirm")).status == 400  # no token at all
    expired_page = await client.get(
        "/v1/consent/confirm", params={"token": expired}, headers={"Accept": "text/html"}
    )
    assert (expired_page.status, expired_page.content_type) == (410, "text/html")
    assert "expired" in await expired_page.text()
    withdraw = await client.post(
        "/v1/consent/withdraw",
        json={"email": "Ann@example.com", "source": "preference_center"},
        headers={"X-API-Key": "k"},
    )
    assert withdraw.status == 202
    privacy = [
        PrivacyRecord.model_validate_json(v)
        for v in await _values(broker, settings.topic(TopicName.PRIVACY), 3)
    ]
    privacy.sort(key=lambda p: p.kind.value)  # two leads, so maybe two partitions
    assert [p.kind.value for p in privacy] == ["consent_confirmed", "consent_withdrawn"]
    assert (privacy[0].lead_id, privacy[0].consent_text_version) == ("e-lead1", "2026-01")
    assert privacy[0].ip_hash == consent.hash_ip("127.0.0.1", settings.privacy_salt.get_secret_value())
    assert privacy[1].lead_id == (await withdraw.json())["lead_id"]
    assert privacy[1].consent_source == "preference_center"

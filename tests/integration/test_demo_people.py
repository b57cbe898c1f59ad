"""`leadpipe dev`'s demo people: they confirm consents through the link nurture mails, on capture."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from schemas import PrivacyRecord, TopicName
from schemas.base import utcnow
from schemas.nurture import NurtureCommand
from services.capture.app import create_app
from services.capture.settings import CaptureSettings
from services.devstack.broker import EmbeddedBroker
from services.devstack.demo_people import DemoPeople
from services.nurture.settings import NurtureSettings
from services.runtime.codec import encode
from services.runtime.topics import ensure_pipeline_topics
from tests.kafka import consume_until

pytestmark = pytest.mark.integration


def request(purpose: str = "consent_request") -> NurtureCommand:
    return NurtureCommand(
        event_id=f"cmd-{purpose}",
        occurred_at=utcnow(),
        lead_id="e-0123456789abcdef01234567",
        sequence="double-opt-in",
        step=0,
        template_id="consent-confirm",
        recipient="jo@example.com",
        personalisation={"consent_text_version": "2026-01"},
        purpose=purpose,  # type: ignore[arg-type]
        send_after=datetime.now(UTC),
    )


async def test_a_demo_person_confirms_through_the_mailed_link(
    broker: EmbeddedBroker, redis_url: str, suffix: str
) -> None:
    capture = CaptureSettings(
        broker_url=broker.url, redis_url=redis_url, topic_suffix=suffix, api_keys="k", consent_secret="s"
    )
    await ensure_pipeline_topics(capture)
    async with TestServer(create_app(capture)) as server, aiohttp.ClientSession() as session:
        confirm = str(server.make_url("/v1/consent/confirm"))
        people = DemoPeople(NurtureSettings(consent_confirm_url=confirm, consent_secret="s"))
        people.offer(TopicName.NURTURE_OUTBOX, encode(request("marketing")))  # not theirs to confirm
        people.offer(TopicName.NURTURE_OUTBOX, encode(request()))
        assert people.requests.qsize() == 1
        assert await people.confirm(session, people.requests.get_nowait())
        wrong_key = DemoPeople(NurtureSettings(consent_confirm_url=confirm, consent_secret="other"))
        assert not await wrong_key.confirm(session, request())  # capture's key, not any key
    records = await consume_until(
        broker.bootstrap_servers, capture.topic(TopicName.PRIVACY), lambda r: len(r) >= 1, within=10
    )
    [confirmed] = [PrivacyRecord.model_validate_json(r.value) for r in records if r.value]
    assert (confirmed.kind.value, confirmed.consent_source, confirmed.lead_id) == (
        "consent_confirmed",
        "double_opt_in_link",
        "e-0123456789abcdef01234567",
    )
    assert confirmed.consent_text_version == "2026-01"

"""A real nurture e-mail's pixel and links, followed against capture on the real broker and Redis."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from schemas.base import utcnow
from schemas.interaction import Interaction, InteractionType
from schemas.nurture import NurtureCommand
from schemas.topics import TopicName
from services.capture.app import create_app
from services.capture.domain import lead_identity
from services.capture.settings import CaptureSettings
from services.capture.tracking import PIXEL
from services.devstack.broker import EmbeddedBroker
from services.nurture.mailer import Mailer, ledger_for
from services.nurture.metrics import nurture_metrics
from services.nurture.settings import NurtureSettings
from services.runtime.send_once import Delivery
from services.runtime.smtp import SmtpTransport
from services.runtime.topics import ensure_pipeline_topics
from services.runtime.tracking_tokens import TokenKind, TrackingClaim, TrackingTokens
from tests.kafka import consume_until
from tests.smtp import local_smtp

pytestmark = pytest.mark.integration

SECRET = "shared-tracking-secret"
RECIPIENT = "jane.doe@example.com"
URL_IN_MAIL = re.compile(r'(?:href|src)="([^"]+)"')
PLAYBOOK = "https://leadpipe.example/guides/speed-to-lead"
SCORING_PRIMER = "https://leadpipe.example/guides/lead-scoring"
Client = TestClient[Any, Any]


@dataclass
class Inbox:
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"


Smtp = tuple[Inbox, int]


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    inbox = Inbox()
    with local_smtp(inbox) as port:
        yield inbox, port


@pytest.fixture
async def capture(broker: EmbeddedBroker, redis_url: str, suffix: str) -> AsyncIterator[Client]:
    settings = CaptureSettings(
        broker_url=broker.url,
        redis_url=redis_url,
        topic_suffix=suffix,
        api_keys="k",
        tracking_secret=SECRET,
    )
    await ensure_pipeline_topics(settings)
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


async def mail_one(capture: Client, smtp: Smtp, suffix: str, redis_url: str) -> str:
    """Deliver a command with the real mailer over real SMTP; return the received HTML."""
    inbox, port = smtp
    settings = NurtureSettings(
        redis_url=redis_url,
        topic_suffix=suffix,
        smtp_port=port,
        tracking_base_url=str(capture.make_url("/")),
        tracking_secret=SECRET,
    )
    ledger = ledger_for(settings)
    mailer = Mailer(settings, ledger, SmtpTransport(settings), nurture_metrics(CollectorRegistry()))
    now = utcnow()
    command = NurtureCommand(
        event_id=f"cmd{suffix}",
        occurred_at=now,
        lead_id=lead_identity(RECIPIENT, None)[0],
        sequence="welcome",
        step=1,
        template_id="welcome-2-best-content",
        recipient=RECIPIENT,
        personalisation={"first_name": "Jane"},
        send_after=now,
    )
    try:
        assert await mailer.deliver(command) == (Delivery.SENT, None)
    finally:
        await ledger.close()
    assert len(inbox.messages) == 1
    body = inbox.messages[0].get_body(("html",))
    assert body is not None
    return str(body.get_content())


def path_of(url: str) -> str:
    return urlsplit(url).path


def tracked(urls: list[str], kind: str, target: str | None = None) -> str:
    tokens = TrackingTokens(SECRET.encode())
    found = [
        path_of(u)
        for u in urls
        if f"/t/{kind}/" in u and (target is None or tokens.verify(u.rsplit("/", 1)[1]).url == target)
    ]
    assert found, f"no /t/{kind}/ link to {target} in the mail"
    return found[0]


def interactions(records: list[ConsumerRecord[bytes, bytes]]) -> list[Interaction]:
    return [Interaction.model_validate_json(r.value) for r in records]


async def test_opens_and_clicks_in_a_real_mail_come_back_as_interactions(
    capture: Client, smtp: Smtp, broker: EmbeddedBroker, suffix: str, redis_url: str
) -> None:
    html = await mail_one(capture, smtp, suffix, redis_url)
    urls = URL_IN_MAIL.findall(html)
    assert all(u.startswith(str(capture.make_url("/t/"))) for u in urls), urls
    lead_id = lead_identity(RECIPIENT, None)[0]
    pixel, click = tracked(urls, "o"), tracked(urls, "c", PLAYBOOK)

    for _ in range(2):  # a second open of the same mail is the same event
        opened = await capture.get(pixel)
        assert opened.status == 200
        assert opened.content_type == "image/gif"
        assert await opened.read() == PIXEL
        assert "no-store" in opened.headers["Cache-Control"]

    # A link scanner's HEAD is answered but not counted.
    scanned = await capture.head(tracked(urls, "c", SCORING_PRIMER), allow_redirects=False)
    assert scanned.status == 302

    clicked = await capture.get(click, allow_redirects=False)
    assert clicked.status == 302
    assert clicked.headers["Location"] == PLAYBOOK

    # Following the unsubscribe link only shows the page; its button (a POST) unsubscribes.
    unsubscribe = tracked(urls, "u")
    page = await capture.get(unsubscribe)
    assert page.status == 200
    assert 'method="post"' in await page.text()
    done = await capture.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert done.status == 200, await done.text()

    topic = CaptureSettings(topic_suffix=suffix).topic(TopicName.INTERACTIONS)
    records = await consume_until(
        broker.bootstrap_servers,
        topic,
        lambda got: any(i.type is InteractionType.UNSUBSCRIBE for i in interactions(got)),
        within=60,
    )
    # One key, so one partition in publishing order: the repeats before the unsubscribe are all here.
    got = interactions(records)
    assert [i.type for i in got] == [
        InteractionType.EMAIL_OPEN,
        InteractionType.EMAIL_CLICK,
        InteractionType.UNSUBSCRIBE,
    ]
    assert {r.key for r in records} == {lead_id.encode()}
    assert {i.lead_id for i in got} == {lead_id}
    assert got[1].properties["url"] == PLAYBOOK
    assert {i.properties["command_id"] for i in got} == {f"cmd{suffix}"}
    assert {i.properties["template_id"] for i in got} == {"welcome-2-best-content"}
    assert all(i.source.channel == "email" and i.contact.email is None for i in got)


async def test_tampered_or_forged_links_are_refused_and_publish_nothing(
    capture: Client, smtp: Smtp, broker: EmbeddedBroker, suffix: str, redis_url: str
) -> None:
    urls = URL_IN_MAIL.findall(await mail_one(capture, smtp, suffix, redis_url))
    click, pixel = tracked(urls, "c", PLAYBOOK), tracked(urls, "o")
    payload_start = len("/t/c/")
    flipped = "A" if click[payload_start + 3] != "A" else "B"
    tampered = click[: payload_start + 3] + flipped + click[payload_start + 4 :]
    forged_claim = TrackingClaim(
        kind=TokenKind.CLICK,
        lead_id="e-victim",
        message_id="m",
        sequence="welcome",
        step=0,
        template_id="welcome-1-hello",
        issued_at=int(utcnow().timestamp()),
        url="https://evil.example/phish",
    )
    forged = "/t/c/" + TrackingTokens(b"guessed-secret").sign(forged_claim)

    for bad, reason in ((tampered, "token_bad_signature"), (forged, "token_bad_signature")):
        refused = await capture.get(bad, allow_redirects=False)
        assert refused.status == 400
        assert "Location" not in refused.headers
        assert (await refused.json())["error"] == reason
    wrong_place = await capture.get("/t/c/" + pixel.rsplit("/", 1)[1], allow_redirects=False)
    assert wrong_place.status == 400
    assert (await wrong_place.json())["error"] == "token_wrong_kind"
    damaged = await capture.get("/t/c/not-a-token", allow_redirects=False)
    assert (await damaged.json())["error"] == "token_malformed"
    # A bad pixel still answers the image, so the mail client shows nothing broken.
    bad_pixel = await capture.get("/t/o/" + tampered.rsplit("/", 1)[1])
    assert bad_pixel.status == 200
    assert await bad_pixel.read() == PIXEL

    # A genuine but expired link still takes the reader to the page, and is not counted.
    expired_claim = TrackingTokens(SECRET.encode()).verify(click.rsplit("/", 1)[1])
    expired_claim = expired_claim.model_copy(update={"issued_at": 0, "url": SCORING_PRIMER})
    expired = await capture.get(
        "/t/c/" + TrackingTokens(SECRET.encode()).sign(expired_claim), allow_redirects=False
    )
    assert expired.status == 302
    assert expired.headers["Location"] == SCORING_PRIMER

    # Then one good click: it must be the only record on the topic. Refusals answer after any publish
    # would have been acknowledged, so reading every partition for a while sees whatever they sent.
    assert (await capture.get(click, allow_redirects=False)).status == 302
    topic = CaptureSettings(topic_suffix=suffix).topic(TopicName.INTERACTIONS)
    records = await consume_until(broker.bootstrap_servers, topic, lambda got: len(got) >= 2, within=10)
    assert [i.type for i in interactions(records)] == [InteractionType.EMAIL_CLICK]
    metrics = await (await capture.get("/metrics")).text()
    assert 'leadpipe_capture_events_rejected_total{reason="tracking_token_bad_signature"} 3.0' in metrics
    assert 'leadpipe_capture_events_rejected_total{reason="tracking_token_expired"} 1.0' in metrics
    assert RECIPIENT not in metrics

"""Nurture against the real broker, Redis and a real SMTP server (aiosmtpd), with shortened delays."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from schemas.base import utcnow
from schemas.nurture import NurtureCommand
from schemas.privacy import PrivacyRecord, PrivacyRequestKind
from schemas.profile import LeadProfile
from schemas.stage import LifecycleStage, Scores, StageChange, StageKind, Temperature, Trigger
from schemas.topics import TopicName
from services.capture.consent import consent_confirmed
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.nurture.app import create_app
from services.nurture.mailer import create_mailer_app
from services.nurture.settings import NurtureSettings
from services.runtime.codec import encode
from services.runtime.consent_tokens import read_token
from services.runtime.stream_app import StreamService
from services.runtime.topics import ensure_pipeline_topics
from tests.eventually import eventually, stopped
from tests.kafka import consume_until, produce
from tests.nurture_commands import command as nurture_command
from tests.smtp import local_smtp

pytestmark = pytest.mark.integration

RULES = """
frequency_cap: {max_messages: 10, window: PT1M}
sequences:
  welcome:
    enrol: {stages: [iql], temperatures: [cold, warm]}
    steps:
      - {template_id: welcome-1, delay: 1, after: enrolment}
      - {template_id: welcome-2, delay: 3}
      - {template_id: welcome-3, delay: 2}
    exit: {temperatures: [hot]}
"""
DELAYS = (1.0, 3.0, 2.0)


@dataclass
class Mailbox:
    """What the SMTP server received: (monotonic arrival, recipient, message)."""

    received: list[tuple[float, str, Message]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            self.received.append(
                (time.time(), rcpt, message_from_bytes(envelope.content, policy=policy.default))
            )
        return "250 OK"

    def to(self, address: str) -> list[tuple[float, Message]]:
        return [(at, msg) for at, rcpt, msg in self.received if rcpt == address]

    async def wait_for(self, check: Callable[[], bool], within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while not check():
            assert time.monotonic() < deadline, f"timed out; mailbox has {len(self.received)} messages"
            await asyncio.sleep(0.1)


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    with local_smtp(box) as port:
        yield box, port


@pytest.fixture
async def settings(
    broker: EmbeddedBroker, redis_url: str, suffix: str, tmp_path: Path, mailbox: tuple[Mailbox, int]
) -> NurtureSettings:
    return await nurture_settings(broker, redis_url, suffix, tmp_path, smtp_port=mailbox[1], tick_seconds=0.2)


async def nurture_settings(
    broker: EmbeddedBroker, redis_url: str, suffix: str, tmp_path: Path, **overrides: Any
) -> NurtureSettings:
    """Nurture on the test broker and Redis with RULES and a 1 s SMTP back-off; its topics created."""
    rules = tmp_path / "nurture.yaml"
    rules.write_text(RULES)
    built = NurtureSettings(
        broker_url=broker.url,
        redis_url=redis_url,
        topic_suffix=suffix,
        web_port=free_port(),
        broker_session_timeout=6,
        rules_file=rules,
        smtp_retry_max_seconds=1,
        **overrides,
    )
    await ensure_pipeline_topics(built)
    return built


async def start(apps: list[StreamService], service: StreamService) -> StreamService:
    await service.app.start()
    apps.append(service)
    return service


def stage(lead: str, lifecycle: LifecycleStage, temperature: Temperature, n: int = 1) -> bytes:
    now = utcnow()
    return encode(
        StageChange(
            event_id=f"{lead}-stage-{n}",
            occurred_at=now,
            lead_id=lead,
            kind=StageKind.LIFECYCLE,
            from_stage="raw",
            to_stage=lifecycle.value,
            temperature=temperature,
            lifecycle=lifecycle,
            scores=Scores(fit=10, engagement=10, total=20),
            trigger=Trigger(event_id=f"{lead}-t{n}", type="form_submit", occurred_at=now),
            profile=LeadProfile(lead_id=lead, email=f"{lead}@example.com", first_name="Jo", timezone="UTC"),
        )
    )


def privacy(lead: str, kind: PrivacyRequestKind) -> bytes:
    return encode(
        PrivacyRecord(event_id=f"{lead}-{kind.value}", occurred_at=utcnow(), lead_id=lead, kind=kind)
    )


async def send(settings: NurtureSettings, topic: TopicName, lead: str, value: bytes) -> None:
    await produce(settings.bootstrap_servers, settings.topic(topic), [(lead.encode(), value)])


def metric(service: StreamService, name: str, labels: dict[str, str]) -> float:
    registry: CollectorRegistry = service.metrics.registry
    return registry.get_sample_value(name, labels) or 0.0


async def test_welcome_series_consent_exit_on_hot(
    settings: NurtureSettings, mailbox: tuple[Mailbox, int], started: list[StreamService]
) -> None:
    box, _ = mailbox
    service = await start(started, create_app(settings))
    for lead in ("consented", "hot-later"):
        await send(settings, TopicName.PRIVACY, lead, privacy(lead, PrivacyRequestKind.CONSENT_CONFIRMED))
    await send(
        settings, TopicName.PRIVACY, "unconfirmed", privacy("unconfirmed", PrivacyRequestKind.CONSENT_GIVEN)
    )
    await asyncio.sleep(0.5)  # consent first; the stage changes arrive on another topic
    for lead in ("consented", "unconfirmed", "hot-later"):
        await send(settings, TopicName.STAGE_CHANGES, lead, stage(lead, LifecycleStage.IQL, Temperature.WARM))

    await box.wait_for(lambda: len(box.to("hot-later@example.com")) == 1)
    await send(
        settings,
        TopicName.STAGE_CHANGES,
        "hot-later",
        stage("hot-later", LifecycleStage.IQL, Temperature.HOT, 2),
    )

    await box.wait_for(lambda: len(box.to("consented@example.com")) == 3)
    got = box.to("consented@example.com")
    assert [m["X-Leadpipe-Template"] for _, m in got] == ["welcome-1", "welcome-2", "welcome-3"]
    # Scheduled at the configured delays, and none delivered before it was due (load only delays mail).
    due = [datetime.fromisoformat(m["X-Leadpipe-Send-After"]).timestamp() for _, m in got]
    for earlier, later, delay in zip(due[:-1], due[1:], DELAYS[1:], strict=True):
        assert later - earlier >= delay, "a step was scheduled before its delay"
    for (arrived, _), send_after in zip(got, due, strict=True):
        assert arrived >= send_after - 0.3, "a step went out before it was due"
    first = got[0][1]
    assert isinstance(first, EmailMessage)
    body = first.get_body(("plain",))
    assert body is not None
    assert "/t/c/" in body.get_content()
    assert got[0][1]["List-Unsubscribe"].startswith("<http")

    await asyncio.sleep(1.0)  # hot-later's step 2 was due ~2 s before consented's step 3
    assert [m["X-Leadpipe-Template"] for _, m in box.to("hot-later@example.com")] == ["welcome-1"]
    # no marketing mail without confirmed consent: only the request to confirm it
    assert [m["X-Leadpipe-Template"] for _, m in box.to("unconfirmed@example.com")] == ["consent-confirm"]
    assert metric(service, "leadpipe_nurture_exits_total", {"sequence": "welcome", "reason": "stage"}) == 1
    # its first step waits for the confirmation instead of being skipped
    assert metric(service, "leadpipe_nurture_suppressed_total", {"reason": "awaiting_confirmation"}) == 1
    assert metric(service, "leadpipe_nurture_suppressed_total", {"reason": "no_consent"}) == 0
    assert metric(service, "leadpipe_nurture_enrolments_total", {"sequence": "welcome"}) == 3
    assert metric(service, "leadpipe_nurture_messages_sent_total", {"sequence": "welcome"}) == 4
    await send(
        settings,
        TopicName.PRIVACY,
        "unconfirmed",
        privacy("unconfirmed", PrivacyRequestKind.CONSENT_CONFIRMED),
    )
    await box.wait_for(lambda: len(box.to("unconfirmed@example.com")) >= 2)
    assert [m["X-Leadpipe-Template"] for _, m in box.to("unconfirmed@example.com")][:2] == [
        "consent-confirm",
        "welcome-1",
    ]


async def test_withdrawal_stops_a_step_already_due(
    settings: NurtureSettings, mailbox: tuple[Mailbox, int], started: list[StreamService]
) -> None:
    """The step is due and queued on the outbox; the withdrawal still keeps it from being sent."""
    box, _ = mailbox
    worker_settings = settings.model_copy(update={"mailer_enabled": False})
    worker = await start(started, create_app(worker_settings))
    for lead in ("withdraws", "stays"):
        await send(settings, TopicName.PRIVACY, lead, privacy(lead, PrivacyRequestKind.CONSENT_CONFIRMED))
    await asyncio.sleep(0.5)
    for lead in ("withdraws", "stays"):
        await send(settings, TopicName.STAGE_CHANGES, lead, stage(lead, LifecycleStage.IQL, Temperature.COLD))
    queued = await consume_until(
        settings.bootstrap_servers, settings.topic(TopicName.NURTURE_OUTBOX), lambda r: len(r) >= 2
    )
    assert sorted(NurtureCommand.model_validate_json(r.value).lead_id for r in queued) == [
        "stays",
        "withdraws",
    ]

    await send(
        settings, TopicName.PRIVACY, "withdraws", privacy("withdraws", PrivacyRequestKind.CONSENT_WITHDRAWN)
    )
    labels = {"sequence": "welcome", "reason": "consent_withdrawn"}
    await box.wait_for(lambda: metric(worker, "leadpipe_nurture_exits_total", labels) == 1)

    mailer = await start(started, create_mailer_app(settings.model_copy(update={"web_port": free_port()})))
    await box.wait_for(lambda: len(box.to("stays@example.com")) >= 1)
    await box.wait_for(
        lambda: metric(mailer, "leadpipe_nurture_suppressed_total", {"reason": "stopped"}) == 1
    )
    assert box.to("withdraws@example.com") == []


async def test_a_consent_given_on_a_form_is_confirmed_through_the_mailed_link(
    settings: NurtureSettings, mailbox: tuple[Mailbox, int], started: list[StreamService]
) -> None:
    """Double opt-in end to end on nurture's side: capture's `consent_given` brings the confirmation
    mail; its link carries a token that capture's confirmation page accepts, and the record that page
    publishes lets the welcome series send."""
    box, _ = mailbox
    await start(started, create_app(settings))
    given = PrivacyRecord(
        event_id="asks-consent-given",
        occurred_at=utcnow(),
        lead_id="asks",
        kind=PrivacyRequestKind.CONSENT_GIVEN,
        consent_text_version="v7",
    )
    await send(settings, TopicName.PRIVACY, "asks", encode(given))
    await send(settings, TopicName.STAGE_CHANGES, "asks", stage("asks", LifecycleStage.IQL, Temperature.WARM))
    await box.wait_for(lambda: len(box.to("asks@example.com")) == 1)
    [(_, mail)] = box.to("asks@example.com")
    assert mail["X-Leadpipe-Template"] == "consent-confirm" and mail["List-Unsubscribe"] is None
    assert isinstance(mail, EmailMessage)
    body = mail.get_body(("plain",))
    assert body is not None
    link = next(word for word in body.get_content().split() if "token=" in word).strip("()")
    assert link.startswith(settings.consent_confirm_url)
    token = link.split("token=", 1)[1]
    claim = read_token(token, settings.consent_secret.get_secret_value(), utcnow())
    assert (claim.lead_id, claim.text_version) == ("asks", "v7")
    await asyncio.sleep(2.0)
    assert len(box.to("asks@example.com")) == 1, "no marketing mail before the confirmation"

    await send(settings, TopicName.PRIVACY, "asks", encode(consent_confirmed(claim, token, utcnow())))
    await box.wait_for(lambda: len(box.to("asks@example.com")) == 2)
    # the steps due before the confirmation were skipped, as for any lead without consent
    assert box.to("asks@example.com")[1][1]["X-Leadpipe-Template"].startswith("welcome-")


def stale_stage(lead: str, before: datetime) -> bytes:
    """A stage change score published a moment before it handled the lead's erasure."""
    change = StageChange.model_validate_json(stage(lead, LifecycleStage.IQL, Temperature.WARM, 9))
    return encode(change.model_copy(update={"occurred_at": before}))


async def test_a_stage_change_from_before_an_erasure_does_not_bring_the_lead_back(
    settings: NurtureSettings, started: list[StreamService]
) -> None:
    """docs/privacy.md: records in flight must not recreate an erased lead. Score may publish a stage
    change just before it handles the erase; when it reaches nurture after the erasure it is
    dropped and counted, while a change that happened after the erasure (the person came back) is
    handled as usual."""
    worker = await start(started, create_app(settings.model_copy(update={"mailer_enabled": False})))
    leads = next(table for table in worker.tables if table.name == "leads")
    await send(settings, TopicName.PRIVACY, "gone", privacy("gone", PrivacyRequestKind.CONSENT_CONFIRMED))
    await asyncio.sleep(0.5)
    before_erasure = utcnow()
    await send(settings, TopicName.STAGE_CHANGES, "gone", stage("gone", LifecycleStage.IQL, Temperature.WARM))
    await eventually(lambda: b"gone" in leads)  # the lead's row stored

    await send(settings, TopicName.PRIVACY, "gone", privacy("gone", PrivacyRequestKind.ERASE))
    await eventually(lambda: b"gone" not in leads)  # the erasure deleted it
    await send(settings, TopicName.STAGE_CHANGES, "gone", stale_stage("gone", before_erasure))
    dropped = {"service": "nurture"}
    await eventually(lambda: metric(worker, "leadpipe_privacy_stale_records_dropped_total", dropped) == 1)
    assert b"gone" not in leads

    came_back = stage("gone", LifecycleStage.IQL, Temperature.WARM, 2)
    await send(settings, TopicName.STAGE_CHANGES, "gone", came_back)
    await eventually(lambda: b"gone" in leads)  # a lead who came back after the erasure: handled as usual


async def test_restart_between_steps_neither_loses_nor_repeats(
    settings: NurtureSettings, mailbox: tuple[Mailbox, int], started: list[StreamService]
) -> None:
    box, _ = mailbox
    lead, address = "restarts", "restarts@example.com"
    first = create_app(settings)
    await first.app.start()
    await send(settings, TopicName.PRIVACY, lead, privacy(lead, PrivacyRequestKind.CONSENT_CONFIRMED))
    await asyncio.sleep(0.5)
    await send(settings, TopicName.STAGE_CHANGES, lead, stage(lead, LifecycleStage.IQL, Temperature.WARM))
    await box.wait_for(lambda: len(box.to(address)) == 1)
    await stopped(first)

    await start(started, create_app(settings.model_copy(update={"web_port": free_port()})))
    await box.wait_for(lambda: len(box.to(address)) == 3, within=45)
    await asyncio.sleep(1.5)
    assert [m["X-Leadpipe-Template"] for _, m in box.to(address)] == ["welcome-1", "welcome-2", "welcome-3"]
    outbox = await consume_until(
        settings.bootstrap_servers, settings.topic(TopicName.NURTURE_OUTBOX), lambda r: len(r) >= 4, within=2
    )
    ids = [NurtureCommand.model_validate_json(r.value).event_id for r in outbox]
    assert len(set(ids)) == 3


async def test_redelivered_command_sends_one_email(
    settings: NurtureSettings, mailbox: tuple[Mailbox, int], started: list[StreamService]
) -> None:
    box, _ = mailbox
    command = nurture_command("cmd-1", "dup", "dup@example.com")
    mailer = await start(started, create_mailer_app(settings))
    await send(settings, TopicName.NURTURE_OUTBOX, "dup", encode(command))
    await send(settings, TopicName.NURTURE_OUTBOX, "dup", encode(command))
    await box.wait_for(lambda: metric(mailer, "leadpipe_nurture_duplicates_total", {"kind": "command"}) == 1)
    assert len(box.to("dup@example.com")) == 1


async def test_a_claim_left_by_a_crashed_mailer_is_sent_once_its_lease_ends(
    settings: NurtureSettings, redis_url: str, mailbox: tuple[Mailbox, int], started: list[StreamService]
) -> None:
    """kill -9 mid-send leaves "sending" behind: the replayed command must still reach the lead."""
    box, _ = mailbox
    command = nurture_command("cmd-orphan", "orphan", "orphan@example.com")
    redis = Redis.from_url(redis_url)
    try:  # the dead worker's claim, with the little that is left of its lease
        await redis.set(f"leadpipe:nurture{settings.topic_suffix}:sent:cmd-orphan", b"sending:dead", ex=2)
    finally:
        await redis.aclose()
    mailer = await start(started, create_mailer_app(settings))
    await send(settings, TopicName.NURTURE_OUTBOX, "orphan", encode(command))
    await box.wait_for(lambda: len(box.to("orphan@example.com")) == 1)
    await send(settings, TopicName.NURTURE_OUTBOX, "orphan", encode(command))  # and a replay after it
    await box.wait_for(lambda: metric(mailer, "leadpipe_nurture_duplicates_total", {"kind": "command"}) == 1)
    assert len(box.to("orphan@example.com")) == 1

"""An SMTP server that is down delays nurture's e-mails and nothing else (real broker, Redis, aiosmtpd).

As a faust agent the mailer held nurture's consumer group while it retried: faust waits for every
event an agent has begun before a rebalance, so a second worker could not join (measured: still
waiting after a minute), and the worker's enrolments and schedules waited with it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from schemas.dead_letter import DeadLetter
from schemas.topics import TopicName
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.nurture.app import create_app
from services.nurture.mailer import create_mailer_app
from services.nurture.settings import NurtureSettings
from services.runtime.codec import encode
from services.runtime.stream_app import StreamService
from tests.eventually import eventually, within
from tests.integration.test_nurture_flow import Mailbox, metric, nurture_settings, send, start
from tests.kafka import consume_until
from tests.nurture_commands import command
from tests.smtp import local_smtp

pytestmark = pytest.mark.integration


@pytest.fixture
async def settings(broker: EmbeddedBroker, redis_url: str, suffix: str, tmp_path: Path) -> NurtureSettings:
    """Nurture with its mail going to a port nobody serves until a test starts the server there."""
    return await nurture_settings(broker, redis_url, suffix, tmp_path, smtp_port=free_port())


async def test_a_second_worker_joins_while_the_mailer_waits_for_smtp(
    settings: NurtureSettings, started: list[StreamService]
) -> None:
    first = await start(started, create_app(settings))
    await send(
        settings, TopicName.NURTURE_OUTBOX, "waits", encode(command("cmd-waits", "waits", "w@example.com"))
    )
    await eventually(lambda: metric(first, "leadpipe_nurture_send_failures_total", {}) >= 1, within=30)
    alone = len(first.app.consumer.assignment())

    # The group rebalances around the waiting mail: the second worker gets its share of partitions.
    second = create_app(settings.model_copy(update={"web_port": free_port()}))
    await within(second.app.start(), 60, "the second worker's start")
    started.append(second)
    await eventually(lambda: second.app.consumer.assignment() and not first.app.rebalancing, within=60)
    shared = len(first.app.consumer.assignment()), len(second.app.consumer.assignment())
    assert sum(shared) == alone and 0 not in shared

    box = Mailbox()
    with local_smtp(box, settings.smtp_port):
        await eventually(lambda: box.to("w@example.com"), within=30)
        await asyncio.sleep(1)
    assert len(box.to("w@example.com")) == 1


async def test_the_stand_alone_mailer_is_ready_and_delivers(
    settings: NurtureSettings, started: list[StreamService]
) -> None:
    await start(started, create_mailer_app(settings))
    url = f"http://127.0.0.1:{settings.web_port}/readyz"

    async def ready() -> bool:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status == 200

    await eventually(ready, within=30)  # the stand-alone mailer's /readyz
    box = Mailbox()
    with local_smtp(box, settings.smtp_port):
        await send(
            settings,
            TopicName.NURTURE_OUTBOX,
            "alone",
            encode(command("cmd-alone", "alone", "a@example.com")),
        )
        await eventually(lambda: box.to("a@example.com"), within=30)


async def test_a_mail_the_server_refuses_for_good_is_dead_lettered_and_holds_nothing_up(
    settings: NurtureSettings, started: list[StreamService]
) -> None:
    """An address with non-ASCII letters needs SMTPUTF8, which this server (like many) lacks; a 5xx
    refuses a recipient. Retried, either held every mail behind it forever (the demo's outbox sent
    nothing for a whole run). Now each is kept as a dead letter with the server's answer."""
    mailer = await start(started, create_mailer_app(settings))
    box = RefusingMailbox()
    with local_smtp(box, settings.smtp_port, enable_SMTPUTF8=False):
        for n, (lead, recipient) in enumerate(
            [("utf8", "rené@example.com"), ("refused", "nobody@refused.example"), ("fine", "f@example.com")]
        ):
            await send(settings, TopicName.NURTURE_OUTBOX, lead, encode(command(f"cmd-{n}", lead, recipient)))
        await eventually(lambda: box.to("f@example.com"), within=30)
    dead = {
        "service": "nurture-mailer",
        "topic": settings.topic(TopicName.NURTURE_OUTBOX),
        "reason": "smtp_refused",
    }
    await eventually(lambda: metric(mailer, "leadpipe_dead_letters_total", dead) == 2, within=10)
    letters = await consume_until(
        settings.bootstrap_servers, settings.topic(TopicName.DLQ), lambda r: len(r) >= 2, within=10
    )
    details = sorted(DeadLetter.model_validate_json(r.value).detail for r in letters if r.value)
    assert any("SMTPNotSupported" in d for d in details) and any("550" in d for d in details), details
    assert metric(mailer, "leadpipe_nurture_suppressed_total", {"reason": "refused"}) == 2


class RefusingMailbox(Mailbox):
    """A mailbox whose server refuses one domain's recipients for good (550)."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.endswith("@refused.example"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

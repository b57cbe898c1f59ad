"""SLA notices whose text comes from outside (real Redis, real SMTP server): a line break in a company
name is a space in the Subject, and a notice that cannot be built is counted and skipped.

Before, a company name with a line break made EmailMessage refuse the Subject with ValueError, which
escaped the notifier: its consumer started again at the same breach, forever, and no later notice
went out."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from schemas.handoff import Handoff, SlaEvent, SlaEventKind
from schemas.stage import StageChange
from services.route.config import parse_config
from services.route.metrics import route_metrics
from services.route.notifier import SlaNotifier
from services.route.router import Outcome, Router
from services.route.settings import RouteSettings
from services.route.store import RedisStore
from services.runtime.send_once import SendClaims
from services.runtime.smtp import SmtpTransport
from tests.route_breaches import NOW
from tests.smtp import local_smtp
from tests.unit.test_route_domain import CONFIG, make_change

pytestmark = pytest.mark.integration


@dataclass
class Inbox:
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"


def with_company(change: StageChange, company: str) -> StageChange:
    """The firmographics' name as the HTTP provider gave it: not normalised like the profile's own."""
    data = change.model_dump(mode="json")
    data["profile"]["company"] = None
    data["profile"]["firmographics"]["company_name"] = company
    return StageChange.model_validate(data)


async def breached(router: Router, change: StageChange) -> SlaEvent:
    """Hand `change`'s lead off and breach it, as the batches do; its `breached` event."""
    outcome = (await router.stored([await router.on_stage_change(change, NOW)]))[0]
    await router.published([r for r in outcome.records if isinstance(r, Handoff)])
    due = outcome.states[0].handoff.sla.due_at + timedelta(seconds=1)
    breach: Outcome = await router.on_due(due, 30)
    await router.published([r for r in breach.records if isinstance(r, Handoff)], breach.breaches)
    return next(r for r in breach.records if isinstance(r, SlaEvent) and r.kind is SlaEventKind.BREACHED)


def record(event: SlaEvent, offset: int) -> ConsumerRecord[bytes, bytes]:
    value = event.model_dump_json().encode()
    return ConsumerRecord(
        "leads.sla", 0, offset, 0, 0, event.lead_id.encode(), value, None, 0, len(value), []
    )


async def test_a_line_break_in_a_company_is_a_space_and_an_unbuildable_notice_is_skipped(
    redis: Redis,
) -> None:
    teams = [dict(team) for team in CONFIG["teams"]]
    # A lead address with a line break in it (a quoted YAML string): no header can carry it.
    teams[1] = {**teams[1], "working_hours": None, "lead": "na-lead@example.com\nBcc: someone@example.com"}
    config = parse_config({**CONFIG, "teams": teams})
    store = RedisStore(redis, f"test:{uuid.uuid4().hex}:")
    router = Router(config, store)
    broken = await breached(router, make_change("lead-na", country="US", channel="Meta_Ads"))
    assert broken.notify == ["na-lead@example.com\nBcc: someone@example.com"]
    multiline = await breached(router, with_company(make_change("lead-nl"), "Acme Holdings\r\nEurope\tGmbH"))

    metrics = route_metrics(CollectorRegistry())
    inbox = Inbox()
    with local_smtp(inbox) as port:
        settings = RouteSettings(smtp_port=port, smtp_retry_max_seconds=0.5)
        claims = SendClaims(redis, f"{store.prefix}notice:", sent_ttl=60, claim_ttl=10)

        async def decode(raw: ConsumerRecord[bytes, bytes]) -> SlaEvent | None:
            assert raw.value is not None
            return SlaEvent.model_validate_json(raw.value)

        notifier = SlaNotifier(
            settings,
            decode=decode,
            config=config,
            store=store,
            claims=claims,
            transport=SmtpTransport(settings),
            metrics=metrics,
        )
        await asyncio.wait_for(notifier.handle([record(broken, 0), record(multiline, 1)]), 20)

    [sent] = inbox.messages
    assert (
        sent["Subject"]
        == "[SLA missed] Jane Doe, Acme Holdings Europe GmbH: not contacted within the hot SLA"
    )
    assert sent["X-Leadpipe-Lead"] == "lead-nl"
    assert metrics.notices.labels("unbuildable")._value.get() == 1
    assert metrics.notices.labels("sent")._value.get() == 1

"""Reminders before the SLA deadline against the real broker, Redis and SMTP server (aiosmtpd): one
`due_soon` event on leads.sla and one mail to the rep per hand-off, however many ticks pass; none
for a contacted lead or a tier without `remind_before`."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.base import utcnow
from schemas.handoff import SlaEvent, SlaEventKind
from schemas.topics import TopicName
from services.devstack.broker import EmbeddedBroker
from services.route.app import RouteService
from tests.integration.test_route_notices import Inbox, metric
from tests.integration.test_route_service import RULES, activity, kinds, read, record, running, settings_for
from tests.kafka import produce
from tests.smtp import local_smtp
from tests.unit.test_route_domain import make_change

pytestmark = pytest.mark.integration

SLA_SECONDS = 10.0
REMIND_SECONDS = 7  # reminded 3 s after the hand-off, breached 10 s after it

REMINDER_RULES: dict[str, Any] = {
    **RULES,
    "teams": [
        {
            **RULES["teams"][0],
            "reps": [
                {"id": "anna", "capacity": 5, "email": "anna@example.com"},
                {"id": "ben", "capacity": 5, "email": "ben@example.com"},
            ],
        },
        *RULES["teams"][1:],
    ],
    "sla": {
        "tiers": [
            {
                "name": "hot",
                "minutes": SLA_SECONDS / 60,
                "temperatures": ["hot"],
                "remind_before": f"PT{REMIND_SECONDS}S",
            },
            {"name": "plain", "minutes": SLA_SECONDS / 60},  # no remind_before
        ],
        "default_tier": "plain",
    },
}


@pytest.fixture
async def route(
    broker: EmbeddedBroker, redis_url: str, suffix: str, tmp_path: Path
) -> AsyncIterator[tuple[RouteService, Inbox]]:
    """Route with its SLA timer ticking every 0.2 s and its notices going to a real SMTP server."""
    rules = tmp_path / "routing.yaml"
    rules.write_text(yaml.safe_dump(REMINDER_RULES))
    inbox = Inbox()
    with local_smtp(inbox) as port:
        settings = settings_for(broker, redis_url, suffix, rules, f"test:{uuid.uuid4().hex}:")
        settings = settings.model_copy(
            update={"smtp_port": port, "notify_lead_url": "https://crm.example/leads/{lead_id}"}
        )
        async with running(settings) as service:
            yield service, inbox


def due_soon(events: list[SlaEvent], lead: str) -> list[SlaEvent]:
    return [e for e in events if e.lead_id == lead and e.kind is SlaEventKind.DUE_SOON]


def reminders(inbox: Inbox, lead: str | None = None) -> list[tuple[str, str]]:
    """(To, Message-ID) of each reminder mail received (about `lead`, or any)."""
    return [
        (str(m["To"]), str(m["Message-ID"]))
        for m in inbox.messages
        if str(m["Subject"]).startswith("[SLA due soon]") and lead in (None, m["X-Leadpipe-Lead"])
    ]


async def test_each_hand_off_in_its_window_is_reminded_once_and_its_rep_mailed_once(
    route: tuple[RouteService, Inbox], broker: EmbeddedBroker
) -> None:
    service, inbox = route
    owned = make_change("lead-owned", email="jane@acme.example", occurred_at=utcnow())  # anna's account
    await produce(broker.bootstrap_servers, service.settings.topic(TopicName.STAGE_CHANGES), [record(owned)])
    # anna is reminded, misses the deadline, and ben, who takes the lead over, is reminded of his own.
    await read(broker, service, TopicName.SLA, lambda es: len(due_soon(es, "lead-owned")) >= 2, within=40)
    await asyncio.sleep(1.5)  # several more ticks, inside ben's window
    events = await read(broker, service, TopicName.SLA, lambda es: False, within=1.5)

    reminded = due_soon(events, "lead-owned")
    assert [e.assignee.rep_id for e in reminded] == ["anna", "ben"]  # one each, however many ticks
    assert [e.notify for e in reminded] == [["anna"], ["ben"]]
    assert len({e.handoff_id for e in reminded}) == 2
    sequence = kinds(events, "lead-owned")
    assert sequence.index(SlaEventKind.DUE_SOON) < sequence.index(SlaEventKind.BREACHED)
    for event in reminded:
        assert event.due_at - event.occurred_at <= timedelta(seconds=REMIND_SECONDS)

    for _ in range(100):
        if len(reminders(inbox)) >= 2:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    assert sorted(reminders(inbox)) == sorted(
        [
            ("anna@example.com", f"<{reminded[0].event_id}@leadpipe.route>"),
            ("ben@example.com", f"<{reminded[1].event_id}@leadpipe.route>"),
        ]
    )
    mail = next(m for m in inbox.messages if m["To"] == "anna@example.com")
    assert str(mail["Subject"]).startswith("[SLA due soon] Jane Doe, Acme: contact by ")
    body = mail.get_content().splitlines()
    assert body[0].startswith("Please contact this lead by ")
    assert "E-mail:   jane@acme.example" in body and "Open:     https://crm.example/leads/lead-owned" in body
    reminders_total = 'leadpipe_route_sla_reminders_total{team="emea",tier="hot"} '
    assert await metric(service, reminders_total) == 2
    # anna's reminder read again (a replay): the lead was handed on to ben since, so it is not sent.
    assert service.notifier is not None
    assert await service.notifier.notify(reminded[0]) is None
    assert await metric(service, 'leadpipe_route_sla_notices_total{outcome="stale"} ') == 1
    assert len(reminders(inbox)) == 2


async def test_no_reminder_for_a_contacted_lead_nor_for_a_tier_without_remind_before(
    route: tuple[RouteService, Inbox], broker: EmbeddedBroker
) -> None:
    service, inbox = route
    contacted = make_change("lead-us", country="US", email="sam@us.example", occurred_at=utcnow())
    plain = make_change("lead-warm", temperature="warm", email="joe@other.example", occurred_at=utcnow())
    control = make_change("lead-hot", email="kim@other.example", occurred_at=utcnow())  # is reminded
    stages = service.settings.topic(TopicName.STAGE_CHANGES)
    await produce(broker.bootstrap_servers, stages, [record(contacted), record(plain), record(control)])
    handoffs = await read(
        broker, service, TopicName.HANDOFFS, lambda hs: {h.lead_id for h in hs} >= {"lead-us", "lead-warm"}
    )
    tiers = {h.lead_id: h.sla.tier for h in handoffs}
    assert tiers == {"lead-us": "hot", "lead-warm": "plain", "lead-hot": "hot"}
    activities = service.settings.topic(TopicName.SALES_ACTIVITY)
    await produce(broker.bootstrap_servers, activities, [activity("lead-us", "contacted")])
    # Past both deadlines: lead-warm is breached without a reminder first, lead-us was met.
    events = await read(
        broker, service, TopicName.SLA, lambda es: SlaEventKind.BREACHED in kinds(es, "lead-warm"), within=40
    )
    await asyncio.sleep(1.0)
    events = await read(broker, service, TopicName.SLA, lambda es: False, within=1.5)
    assert kinds(events, "lead-us") == [SlaEventKind.STARTED, SlaEventKind.MET]
    assert Counter(kinds(events, "lead-warm"))[SlaEventKind.DUE_SOON] == 0
    # The timer did remind where a reminder was due: the control lead's first hand-off.
    first = next(h for h in handoffs if h.lead_id == "lead-hot")
    [reminded] = [e for e in due_soon(events, "lead-hot") if e.handoff_id == first.handoff_id]
    for _ in range(50):
        if reminders(inbox, "lead-hot"):
            break
        await asyncio.sleep(0.1)
    assert f"<{reminded.event_id}@leadpipe.route>" in [mid for _, mid in reminders(inbox, "lead-hot")]
    assert reminders(inbox, "lead-us") == [] and reminders(inbox, "lead-warm") == []
    assert await metric(service, "leadpipe_route_sla_reminders_total{") >= 1

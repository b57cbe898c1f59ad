"""SLA breach notices against the real broker, Redis and SMTP server (aiosmtpd): the team lead is
told once per breach, the escalation list is copied in, and an SMTP outage delays the notices and
nothing else."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from schemas.base import utcnow
from schemas.handoff import SlaEventKind
from schemas.topics import TopicName
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.route.app import RouteService
from services.runtime.send_once import Delivery
from tests.eventually import eventually
from tests.integration.test_route_service import kinds, read, record, running, settings_for, write_rules
from tests.kafka import produce
from tests.smtp import local_smtp
from tests.unit.test_route_domain import make_change

pytestmark = pytest.mark.integration


@dataclass
class Inbox:
    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"

    async def wait_for(self, count: int, within: float = 30) -> list[EmailMessage]:
        deadline = asyncio.get_running_loop().time() + within
        while len(self.messages) < count:
            assert asyncio.get_running_loop().time() < deadline, f"{len(self.messages)} of {count} notices"
            await asyncio.sleep(0.1)
        return self.messages


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    return write_rules(tmp_path)


@pytest.fixture
async def started(
    broker: EmbeddedBroker, redis_url: str, suffix: str, rules_file: Path
) -> AsyncIterator[tuple[RouteService, int]]:
    """Route with its notices going to a port nobody serves yet: each test starts the server."""
    port = free_port()
    settings = settings_for(broker, redis_url, suffix, rules_file, f"test:{uuid.uuid4().hex}:")
    settings = settings.model_copy(
        update={
            "smtp_port": port,
            "smtp_retry_max_seconds": 0.5,
            "notify_lead_url": "https://crm.example/leads/{lead_id}",
        }
    )
    async with running(settings) as service:
        yield service, port


async def metric(service: RouteService, line: str, having: str = "") -> float:
    """The sum of the exposed samples whose line starts with `line` (and holds `having`)."""
    url = f"http://127.0.0.1:{service.settings.web_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    rows = [row for row in text.splitlines() if row.startswith(line) and having in row]
    return sum(float(row.rsplit(" ", 1)[1]) for row in rows)


async def test_each_breach_tells_the_team_lead_once_and_escalations_copy_the_list(
    started: tuple[RouteService, int], broker: EmbeddedBroker
) -> None:
    route, port = started
    inbox = Inbox()
    with local_smtp(inbox, port):
        owned = make_change("lead-owned", email="jane@acme.example", occurred_at=utcnow())
        stage_topic = route.settings.topic(TopicName.STAGE_CHANGES)
        await produce(broker.bootstrap_servers, stage_topic, [record(owned)])
        # anna misses the 3 s deadline, then ben: two breaches, the second escalated.
        first, second = await inbox.wait_for(2)
        events = await read(
            broker, route, TopicName.SLA, lambda es: SlaEventKind.ESCALATED in kinds(es, "lead-owned")
        )
        breaches = [e for e in events if e.kind is SlaEventKind.BREACHED]

        assert first["To"] == "lead-emea@example.com" and first["Cc"] is None
        assert inbox.recipients[0] == ["lead-emea@example.com"]
        assert first["Subject"] == "[SLA missed] Jane Doe, Acme: not contacted within the hot SLA"
        assert first["Message-ID"] == f"<{breaches[0].event_id}@leadpipe.route>"
        assert first["Auto-Submitted"] == "auto-generated"
        body = first.get_content().splitlines()
        assert body[0].startswith("anna (emea) did not contact this lead before its hot SLA deadline")
        assert "E-mail:   jane@acme.example" in body and "Breach:   1" in body
        assert any(line.startswith("Now:      reassigned to ben (emea), due ") for line in body)
        assert "Open:     https://crm.example/leads/lead-owned" in body

        assert second["To"] == "lead-emea@example.com" and second["Cc"] == "head-of-sales@example.com"
        assert sorted(inbox.recipients[1]) == ["head-of-sales@example.com", "lead-emea@example.com"]
        assert second["Subject"].startswith("[SLA escalated] Jane Doe, Acme")
        assert "Breach:   2, escalated to level 1" in second.get_content().splitlines()

        # A replay of the breach (a rebalance, a restart) finds it sent and sends nothing.
        assert route.notifier is not None
        assert await route.notifier.notify(breaches[0]) is Delivery.DUPLICATE
        await asyncio.sleep(1)
        assert len(inbox.messages) in (2, 3)  # a third breach (sdr's) may have come due meanwhile
        assert len({m["Message-ID"] for m in inbox.messages}) == len(inbox.messages)
    assert await metric(route, 'leadpipe_route_sla_notices_total{outcome="sent"} ') >= 2
    assert await metric(route, 'leadpipe_route_sla_notices_total{outcome="duplicate"} ') == 1


async def test_an_smtp_outage_delays_the_notices_and_nothing_else(
    started: tuple[RouteService, int], broker: EmbeddedBroker
) -> None:
    route, port = started
    change = make_change("lead-down", email="max@down.example", occurred_at=utcnow())
    await produce(broker.bootstrap_servers, route.settings.topic(TopicName.STAGE_CHANGES), [record(change)])
    # With nobody on the SMTP port, the breaches still reassign the lead and escalate.
    events = await read(
        broker, route, TopicName.SLA, lambda es: SlaEventKind.ESCALATED in kinds(es, "lead-down")
    )
    await eventually(lambda: metric(route, "leadpipe_route_sla_notice_failures_total "), within=15)
    # The notices waiting show as route's lag on leads.sla (the lag gauge is refreshed every 5 s).
    sla = f'topic="{route.settings.topic(TopicName.SLA)}"'
    await eventually(lambda: metric(route, "leadpipe_consumer_lag{", sla), within=20)
    assert await metric(route, 'leadpipe_route_sla_notices_total{outcome="sent"} ') == 0
    inbox = Inbox()
    with local_smtp(inbox, port):
        notices = await inbox.wait_for(2)
        breaches = [e.event_id for e in events if e.kind is SlaEventKind.BREACHED][:2]
        assert [m["Message-ID"] for m in notices[:2]] == [f"<{eid}@leadpipe.route>" for eid in breaches]

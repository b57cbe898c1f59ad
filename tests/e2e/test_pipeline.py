"""The whole pipeline as processes: a hand-raiser posted to capture becomes one hand-off with an SLA.

capture -> leads.interactions -> enrich -> leads.enriched -> score -> leads.stage-changes -> route
-> leads.handoffs and leads.sla. The routing rules are the test's own: reps on call around the clock
and a 6-second hot SLA, so the breach path runs in seconds at any hour.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import yaml

from schemas import Handoff, SalesActivity, SalesActivityKind, SlaEvent, SlaEventKind, TopicName
from services.runtime.codec import encode
from tests.e2e.stack import Stack, start_stack
from tests.kafka import consume_until, produce

pytestmark = pytest.mark.e2e

SLA_SECONDS = 6.0
ROUTING: dict[str, Any] = {
    "teams": [
        {
            "name": "dach",
            "lead": "lead-dach@example.com",
            "working_hours": None,
            "reps": [{"id": "anna", "capacity": 10}, {"id": "ben", "capacity": 10}],
        },
        {"name": "queue", "working_hours": None, "reps": [{"id": "sdr", "capacity": 10}]},
    ],
    "rules": [{"name": "dach", "team": "dach", "match": {"countries": ["DE", "AT", "CH"]}}],
    "account_owners": {},
    "fallback_team": "queue",
    "sla": {
        "tiers": [{"name": "hot", "minutes": SLA_SECONDS / 60, "temperatures": ["hot"]}],
        "default_tier": "hot",
        "escalation": ["head-of-sales@example.com"],
    },
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp_path = tmp_path_factory.mktemp("pipeline")
    rules = tmp_path / "routing.yaml"
    rules.write_text(yaml.safe_dump(ROUTING))
    running = start_stack(
        tmp_path, "--no-demo", env={"ROUTE_RULES_FILE": str(rules), "ROUTE_SLA_CHECK_INTERVAL": "0.5"}
    )
    try:
        running.wait_for("leadpipe is ready", within=240)
        for service in ("enrich", "score", "route"):
            assert f"  {service} " in running.text(), f"{service} is not part of the stack"
        yield running
    finally:
        running.kill()


async def post_demo_request(stack: Stack, email: str) -> str:
    event = {
        "event_id": uuid.uuid4().hex,
        "type": "demo_request",
        "occurred_at": datetime.now(UTC).isoformat(),
        "contact": {
            "email": email,
            "first_name": "Marie",
            "last_name": "Schulz",
            "job_title": "VP Sales",
            "country": "Germany",
        },
        "source": {"channel": "web", "utm_campaign": "e2e"},
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{stack.capture_url}/v1/events", json=event, headers={"X-API-Key": "dev-key"}
        ) as answer,
    ):
        assert answer.status == 202, await answer.text()
        lead_id: str = (await answer.json())["lead_id"]
        return lead_id


async def records_for(stack: Stack, topic: str, lead_id: str, done: Any, within: float = 60) -> list[bytes]:
    records = await consume_until(
        stack.bootstrap,
        topic,
        lambda rs: done([r.value for r in rs if r.key == lead_id.encode()]),
        within=within,
    )
    return [r.value for r in records if r.key == lead_id.encode()]


async def test_hand_raiser_gets_one_handoff_then_breach_and_reassignment(stack: Stack) -> None:
    lead_id = await post_demo_request(stack, f"marie.{uuid.uuid4().hex[:6]}@christoph-auch.com")

    raw = await records_for(stack, TopicName.HANDOFFS, lead_id, lambda vs: len(vs) >= 1)
    first = Handoff.model_validate_json(raw[0])
    assert first.assignee.team == "dach"
    assert first.assignee.rep_id in {"anna", "ben"}
    assert first.temperature == "hot"
    assert first.sla.tier == "hot"
    assert first.sla.due_at == first.handed_off_at + timedelta(seconds=SLA_SECONDS)
    assert first.contact.email is not None and first.contact.email.endswith("@christoph-auch.com")
    assert any(reason.rule == "demo_request" for reason in first.reasons)

    sla = await records_for(
        stack,
        TopicName.SLA,
        lead_id,
        lambda vs: any(SlaEvent.model_validate_json(v).kind == SlaEventKind.REASSIGNED for v in vs),
        within=SLA_SECONDS + 30,
    )
    kinds = [SlaEvent.model_validate_json(v).kind for v in sla]
    assert kinds[:3] == [SlaEventKind.STARTED, SlaEventKind.BREACHED, SlaEventKind.REASSIGNED]
    breach = SlaEvent.model_validate_json(sla[1])
    assert "lead-dach@example.com" in breach.notify

    handoffs = [
        Handoff.model_validate_json(v)
        for v in await records_for(stack, TopicName.HANDOFFS, lead_id, lambda vs: len(vs) >= 2)
    ]
    assert len({h.handoff_id for h in handoffs}) == len(handoffs) == 2
    assert handoffs[1].assignee.rep_id not in {None, first.assignee.rep_id}


async def test_contact_within_the_sla_stops_the_clock(stack: Stack) -> None:
    lead_id = await post_demo_request(stack, f"jonas.{uuid.uuid4().hex[:6]}@christoph-auch.com")
    raw = await records_for(stack, TopicName.HANDOFFS, lead_id, lambda vs: len(vs) >= 1)
    handoff = Handoff.model_validate_json(raw[0])
    contacted = SalesActivity(
        event_id=uuid.uuid4().hex,
        occurred_at=datetime.now(UTC),
        lead_id=lead_id,
        activity=SalesActivityKind.CONTACTED,
        rep_id=handoff.assignee.rep_id,
    )
    await produce(stack.bootstrap, TopicName.SALES_ACTIVITY, [(lead_id.encode(), encode(contacted))])

    sla = await records_for(
        stack,
        TopicName.SLA,
        lead_id,
        lambda vs: any(SlaEvent.model_validate_json(v).kind == SlaEventKind.MET for v in vs),
        within=SLA_SECONDS + 10,
    )
    # Wait past the deadline: nothing may follow "met".
    late = await records_for(stack, TopicName.SLA, lead_id, lambda vs: False, within=SLA_SECONDS + 2)
    kinds = [SlaEvent.model_validate_json(v).kind for v in late]
    assert kinds == [SlaEventKind.STARTED, SlaEventKind.MET], kinds
    assert len(sla) <= len(late)
    handoffs = await records_for(stack, TopicName.HANDOFFS, lead_id, lambda vs: False, within=1)
    assert len(handoffs) == 1

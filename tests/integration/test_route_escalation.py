"""A breach that keeps the lead arms its clock again while the escalation list has people left to
tell (real Redis): from the second breach on, each breach copies one more entry of `sla.escalation`.

Before, the first breach that kept the lead (reassign_on_breach: false, or past max_reassignments)
stopped its clock for good: the uncontacted lead was never breached again and the escalation list
was never told."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from schemas.handoff import Handoff, SlaEvent
from schemas.sales import SalesActivity
from services.route.config import parse_config
from services.route.router import Outcome, Router
from services.route.store import RedisStore
from tests.route_breaches import hand_off, kinds
from tests.unit.test_route_domain import CONFIG

pytestmark = pytest.mark.integration

LEASE = 30.0


async def acknowledged(router: Router, outcome: Outcome) -> Outcome:
    await router.published([r for r in outcome.records if isinstance(r, Handoff)], outcome.breaches)
    return outcome


async def next_breach(router: Router, store: RedisStore) -> tuple[datetime | None, Outcome]:
    """The lead's armed deadline, and the breach at it (nothing when no clock runs)."""
    due_ms = await store.redis.zscore(f"{store.prefix}sla", "lead-1")
    if due_ms is None:
        return None, Outcome()
    due = datetime.fromtimestamp(due_ms / 1000, tz=UTC)
    return due, await acknowledged(router, await router.on_due(due + timedelta(seconds=1), LEASE))


def notified(outcome: Outcome) -> list[tuple[str, int, list[str]]]:
    return [(r.kind.value, r.breach_count, r.notify) for r in outcome.records if isinstance(r, SlaEvent)]


@pytest.fixture
def store(redis: Redis) -> RedisStore:
    return RedisStore(redis, f"test:{uuid.uuid4().hex}:")


async def test_a_kept_lead_is_breached_again_until_the_escalation_list_is_told(store: RedisStore) -> None:
    sla = {"reassign_on_breach": False, "escalation": ["head@example.com", "vp@example.com"]}
    router = Router(parse_config({**CONFIG, "sla": sla}), store)
    first = await hand_off(router)
    lead = "lead-dach@example.com"

    due1, one = await next_breach(router, store)
    due2, two = await next_breach(router, store)
    due3, three = await next_breach(router, store)
    due4, four = await next_breach(router, store)

    assert notified(one) == [("breached", 1, [lead])]
    assert notified(two) == [
        ("breached", 2, [lead, "head@example.com"]),
        ("escalated", 2, [lead, "head@example.com"]),
    ]
    assert notified(three) == [
        ("breached", 3, [lead, "head@example.com", "vp@example.com"]),
        ("escalated", 3, [lead, "head@example.com", "vp@example.com"]),
    ]
    assert due4 is None and four.records == []  # the list is used up: the clock stops
    assert due1 is not None and due2 is not None and due3 is not None
    # The hot tier's minutes again, from the breach (a second after the deadline here).
    assert due2 - due1 == timedelta(minutes=5, seconds=1)
    assert {r.handoff_id for r in [*one.records, *two.records, *three.records]} == {first.handoff_id}
    state = await store.state("lead-1")
    assert state is not None and state.breach_count == 3 and not state.contacted
    assert await store.loads() == {"anna": 1}


async def test_a_contact_after_a_kept_breach_stops_the_rearmed_clock(store: RedisStore) -> None:
    sla = {"reassign_on_breach": False, "escalation": ["head@example.com"]}
    router = Router(parse_config({**CONFIG, "sla": sla}), store)
    first = await hand_off(router)
    due, one = await next_breach(router, store)
    assert due is not None and kinds(one.records) == ["breached"]
    body = {"event_id": "c-1", "occurred_at": due.isoformat(), "lead_id": "lead-1", "activity": "contacted"}

    contacted = await router.on_activity(SalesActivity.model_validate(body), due)

    assert [(r.kind.value, r.handoff_id, r.breach_count) for r in contacted.records] == [
        ("met", first.handoff_id, 1)
    ]
    assert (await next_breach(router, store))[0] is None


async def test_past_max_reassignments_the_kept_breaches_escalate_too(store: RedisStore) -> None:
    sla = {"max_reassignments": 1, "escalation": ["head@example.com", "vp@example.com"]}
    router = Router(parse_config({**CONFIG, "sla": sla}), store)
    await hand_off(router)

    outcomes = [(await next_breach(router, store))[1] for _ in range(4)]

    assert [kinds(o.records) for o in outcomes] == [
        ["breached", "handoff", "reassigned"],
        ["breached", "escalated"],  # kept: no reassignments left
        ["breached", "escalated"],
        [],
    ]
    assert outcomes[2].records[0].notify == ["lead-dach@example.com", "head@example.com", "vp@example.com"]

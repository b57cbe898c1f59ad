"""Sales activity against the real Redis: a closing activity survives a breach that moves the lead
under it, and an activity applies only to the hand-off chain that was open when it occurred, once.

Before, a `won` read just before a breach reassigned the lead was refused as stale and dropped: the
lead stayed with the next rep, breaching and escalating for good. And a replayed activity (the
consumer starting again from its last commit) closed, or marked as met, the lead's NEXT hand-off,
made since."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from redis.asyncio import Redis

from schemas.handoff import Handoff
from schemas.sales import SalesActivity
from services.route import domain
from services.route.config import parse_config
from services.route.router import Outcome, Router
from services.route.store import RedisStore
from tests.route_breaches import NOW, hand_off, kinds
from tests.unit.test_route_domain import CONFIG, make_change

pytestmark = pytest.mark.integration

LEASE = 30.0
BREACHED_AT = NOW + timedelta(minutes=10)


def activity(kind: str, at: datetime, event_id: str | None = None) -> SalesActivity:
    body = {
        "event_id": event_id or uuid.uuid4().hex,
        "occurred_at": at.isoformat(),
        "lead_id": "lead-1",
        "activity": kind,
    }
    return SalesActivity.model_validate(body)


async def acknowledged(router: Router, outcome: Outcome) -> Outcome:
    """What RouteBatch does: store the new states, then settle once the broker acknowledged."""
    outcome = (await router.stored([outcome]))[0]
    await router.published([r for r in outcome.records if isinstance(r, Handoff)], outcome.breaches)
    return outcome


async def clock(store: RedisStore) -> float | None:
    return await store.redis.zscore(f"{store.prefix}sla", "lead-1")


class BreachAfterRead(RedisStore):
    """The real store; right after the activity agent read the lead's state, another worker's SLA
    timer breaches the lead, reassigns it and the broker acknowledges the breach."""

    router: Router
    due_at: datetime | None = None
    breaches: list[Outcome]

    async def state(self, lead_id: str) -> domain.LeadState | None:
        state = await super().state(lead_id)
        if self.due_at is not None:
            at, self.due_at = self.due_at, None
            self.breaches.append(await acknowledged(self.router, await self.router.on_due(at, LEASE)))
        return state


@pytest.fixture
def store(redis: Redis) -> BreachAfterRead:
    made = BreachAfterRead(redis, f"test:{uuid.uuid4().hex}:")
    made.breaches = []
    made.router = Router(parse_config(CONFIG), made)
    return made


@pytest.mark.parametrize("kind", ["won", "lost", "rejected"])
@pytest.mark.parametrize("during", [True, False], ids=["occurred-during-first", "occurred-after-breach"])
async def test_a_closing_activity_read_before_a_breach_closes_the_reassignment(
    store: BreachAfterRead, kind: str, during: bool
) -> None:
    router = store.router
    first = await hand_off(router)
    moved_to = domain.handoff_id("lead-1", first.handoff_id, 1)
    store.due_at = BREACHED_AT
    at = (BREACHED_AT - timedelta(minutes=1)) if during else (BREACHED_AT + timedelta(seconds=1))

    closed = await router.on_activity(activity(kind, at), BREACHED_AT + timedelta(seconds=2))

    [breach] = store.breaches
    assert kinds(breach.records) == ["breached", "handoff", "reassigned"]
    assert kinds(closed.records) == ["cancelled"] and closed.records[0].handoff_id == moved_to
    assert await store.state("lead-1") is None
    assert await store.loads() == {"anna": 0, "jonas": 0}
    assert await clock(store) is None
    assert await store.claim_due(BREACHED_AT + timedelta(days=1), LEASE) == []


async def test_a_replayed_closing_activity_leaves_the_next_hand_off_open(store: BreachAfterRead) -> None:
    router = store.router
    await hand_off(router)
    won = activity("won", NOW + timedelta(minutes=2), event_id="act-won-1")
    assert kinds((await router.on_activity(won, NOW + timedelta(minutes=2))).records) == ["cancelled"]
    later = NOW + timedelta(days=7)
    second = await acknowledged(
        router, await router.on_stage_change(make_change("lead-1", event_id="sc-2"), later)
    )
    reopened = second.records[0]
    assert isinstance(reopened, Handoff)

    replayed = await router.on_activity(won, later + timedelta(seconds=5))

    assert replayed.records == []
    state = await store.state("lead-1")
    assert state is not None and state.handoff.handoff_id == reopened.handoff_id and not state.contacted
    assert sum((await store.loads()).values()) == 1
    assert await clock(store) is not None


async def test_a_replayed_contact_does_not_meet_the_next_hand_offs_sla(store: BreachAfterRead) -> None:
    router = store.router
    await hand_off(router)
    contact = activity("contacted", NOW + timedelta(minutes=1), event_id="act-c")
    assert kinds((await router.on_activity(contact, NOW + timedelta(minutes=1))).records) == ["met"]
    lost = NOW + timedelta(days=1)
    await router.on_activity(activity("lost", lost), lost)
    later = NOW + timedelta(days=7)
    await acknowledged(router, await router.on_stage_change(make_change("lead-1", event_id="sc-b"), later))

    replayed = await router.on_activity(contact, later + timedelta(seconds=5))

    assert replayed.records == [] and replayed.first_contact_seconds is None
    state = await store.state("lead-1")
    assert state is not None and not state.contacted
    assert await clock(store) is not None


async def test_an_activity_applies_once_by_event_id(store: BreachAfterRead) -> None:
    """The same activity again, with a time the chain allows (a sales tool's clock ahead), is a
    replay still: once the lead is handed off anew, its event id was seen and it changes nothing."""
    router = store.router
    await hand_off(router)
    at = NOW + timedelta(days=30)  # stamped far ahead by the sales tool
    won = activity("won", at, event_id="act-won-ahead")
    assert kinds((await router.on_activity(won, NOW + timedelta(minutes=2))).records) == ["cancelled"]
    later = NOW + timedelta(days=7)
    await acknowledged(router, await router.on_stage_change(make_change("lead-1", event_id="sc-3"), later))

    assert (await router.on_activity(won, later + timedelta(seconds=5))).records == []
    assert await store.state("lead-1") is not None and await clock(store) is not None


async def test_a_contact_during_the_first_hand_off_counts_for_its_reassignment(
    store: BreachAfterRead,
) -> None:
    """Fix 1 and 2 agree: the chain began with the first hand-off, so a contact made during it and
    handled after a breach moved the lead still stops the moved lead's clock."""
    router = store.router
    first = await hand_off(router)
    breach = await acknowledged(router, await router.on_due(BREACHED_AT, LEASE))
    assert kinds(breach.records) == ["breached", "handoff", "reassigned"]
    at = BREACHED_AT - timedelta(minutes=1)

    contacted = await router.on_activity(activity("contacted", at), BREACHED_AT + timedelta(seconds=1))

    assert kinds(contacted.records) == ["met"]
    assert contacted.records[0].handoff_id == domain.handoff_id("lead-1", first.handoff_id, 1)
    before = await router.on_activity(activity("won", NOW - timedelta(minutes=10)), BREACHED_AT)
    assert before.records == []  # before the chain began (and the clock skew allowed): another hand-off's
    assert await store.state("lead-1") is not None

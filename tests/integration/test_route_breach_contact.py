"""A contact handled while an SLA breach is half-way (its Redis script moved the lead, its state is not
stored yet) counts: the breach stores the lead as contacted and publishes the one `met`, for the
hand-off the lead now holds (real Redis).

Before, the contact read the old hand-off's state, stopped the clock and failed to store itself: the
breach then stored the new hand-off as never contacted, the `met` named the breached hand-off, and
when the breach failed before storing its state the lead stayed half-way for good (no clock left to
retry it, its reassignment never published)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from schemas.handoff import Assignee, Handoff, SlaEvent, SlaEventKind
from schemas.sales import SalesActivity
from services.route import domain
from services.route.config import parse_config
from services.route.router import Outcome, Router
from services.route.store import RedisStore
from tests.route_breaches import NOW, hand_off, kinds
from tests.unit.test_route_domain import CONFIG

pytestmark = pytest.mark.integration

LEASE = 30.0
BREACHED_AT = NOW + timedelta(minutes=10)


def activity(kind: str, at: datetime) -> SalesActivity:
    body = {
        "event_id": uuid.uuid4().hex,
        "occurred_at": at.isoformat(),
        "lead_id": "lead-1",
        "activity": kind,
    }
    return SalesActivity.model_validate(body)


class ContactMidBreach(RedisStore):
    """The real store; right before the breach stores its state (after its script moved the lead),
    the activity agent handles a contact on the same Redis, and then, if `failure` is set, the breach
    fails (its worker lost Redis)."""

    router: Router
    contact_at: datetime | None = None
    failure: BaseException | None = None
    contacts: list[Outcome]

    async def save_breach(self, *args: Any, **kwargs: Any) -> Any:
        if self.contact_at is not None:
            at, self.contact_at = self.contact_at, None
            self.contacts.append(await self.router.on_activity(activity("contacted", at), at))
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure
        return await super().save_breach(*args, **kwargs)


@pytest.fixture
def store(redis: Redis) -> ContactMidBreach:
    made = ContactMidBreach(redis, f"test:{uuid.uuid4().hex}:")
    made.contacts = []
    return made


def mets(outcomes: list[Outcome]) -> list[SlaEvent]:
    return [r for o in outcomes for r in o.records if isinstance(r, SlaEvent) and r.kind == SlaEventKind.MET]


async def acknowledged(router: Router, outcome: Outcome) -> None:
    """What RouteBatch does once the broker acknowledged an outcome's records."""
    await router.published([r for r in outcome.records if isinstance(r, Handoff)], outcome.breaches)


async def clock(store: RedisStore) -> float | None:
    return await store.redis.zscore(f"{store.prefix}sla", "lead-1")


@pytest.mark.parametrize("fails", [False, True], ids=["stored", "failed-then-retried"])
async def test_a_contact_during_a_reassigning_breach_counts_for_the_new_hand_off(
    store: ContactMidBreach, fails: bool
) -> None:
    router = Router(parse_config(CONFIG), store)
    store.router = router
    first = await hand_off(router)
    moved_to = domain.handoff_id("lead-1", first.handoff_id, 1)
    store.contact_at = BREACHED_AT + timedelta(seconds=1)
    if fails:
        store.failure = RedisConnectionError("Connection reset")

    breach = await router.on_due(BREACHED_AT, LEASE)
    if fails:
        assert breach.records == []
        breach = await router.on_due(BREACHED_AT + timedelta(seconds=LEASE), LEASE)  # the retry

    assert [kinds(c.records) for c in store.contacts] == [[]]  # the breach publishes the contact's `met`
    assert kinds(breach.records) == ["breached", "handoff", "reassigned", "met"]
    [met] = mets([*store.contacts, breach])
    assert met.handoff_id == moved_to and met.assignee == Assignee(rep_id="jonas", team="dach")
    assert met.breach_count == 1
    state = await store.state("lead-1")
    assert state is not None and state.contacted and state.handoff.handoff_id == moved_to
    assert await store.loads() == {"anna": 0, "jonas": 1}
    # Stored with the breach: its publish failing, the same records go out again after the lease.
    leased_until = BREACHED_AT + timedelta(seconds=(2 if fails else 1) * LEASE)
    assert (await router.on_due(leased_until, LEASE)).records == breach.records

    await acknowledged(router, breach)

    # Never breached again, and a later contact publishes no second `met`.
    assert await clock(store) is None
    assert await store.claim_due(BREACHED_AT + timedelta(days=1), LEASE) == []
    later = BREACHED_AT + timedelta(hours=1)
    assert (await router.on_activity(activity("meeting_booked", later), later)).records == []
    # The lead can still be closed: a rejection frees jonas.
    rejected = await router.on_activity(activity("rejected", later), later)
    assert kinds(rejected.records) == ["cancelled"] and rejected.records[0].handoff_id == moved_to
    assert await store.loads() == {"anna": 0, "jonas": 0}


async def test_a_contact_during_a_breach_that_keeps_the_lead_is_stored_and_the_clock_stops(
    store: ContactMidBreach,
) -> None:
    """A kept breach stops the clock, so a contact after it publishes no `met` (it counts as contact,
    not as the SLA met); one during it is the same."""
    router = Router(parse_config({**CONFIG, "sla": {"reassign_on_breach": False}}), store)
    store.router = router
    first = await hand_off(router)
    store.contact_at = BREACHED_AT + timedelta(seconds=1)

    breach = await router.on_due(BREACHED_AT, LEASE)

    assert [kinds(c.records) for c in store.contacts] == [[]]
    assert kinds(breach.records) == ["breached"] and breach.records[0].handoff_id == first.handoff_id
    state = await store.state("lead-1")
    assert state is not None and state.contacted and state.breach_count == 1
    await acknowledged(router, breach)
    assert await clock(store) is None
    assert await store.claim_due(BREACHED_AT + timedelta(days=1), LEASE) == []


class BreachAfterRead(RedisStore):
    """The real store; right after the activity agent read the lead's state, the SLA timer breaches
    the lead (its publish not acknowledged yet), so the contact stores itself after the breach."""

    router: Router
    due_at: datetime | None = None
    breaches: list[Outcome]

    async def state(self, lead_id: str) -> domain.LeadState | None:
        state = await super().state(lead_id)
        if self.due_at is not None:
            at, self.due_at = self.due_at, None
            self.breaches.append(await self.router.on_due(at, LEASE))
        return state


async def test_a_contact_read_before_a_breach_and_stored_after_it_counts_for_the_new_hand_off(
    redis: Redis,
) -> None:
    store = BreachAfterRead(redis, f"test:{uuid.uuid4().hex}:")
    store.breaches = []
    router = Router(parse_config(CONFIG), store)
    store.router = router
    first = await hand_off(router)
    moved_to = domain.handoff_id("lead-1", first.handoff_id, 1)
    store.due_at = BREACHED_AT
    at = BREACHED_AT + timedelta(seconds=1)

    contacted = await router.on_activity(activity("contacted", at), at)

    [breach] = store.breaches
    assert kinds(breach.records) == ["breached", "handoff", "reassigned"]
    # Read again: the breach's records (not acknowledged yet) go out ahead of the new hand-off's `met`.
    assert kinds(contacted.records) == ["breached", "handoff", "reassigned", "met"]
    [met] = mets([breach, contacted])
    assert met.handoff_id == moved_to and met.assignee.rep_id == "jonas"
    state = await store.state("lead-1")
    assert state is not None and state.contacted and state.handoff.handoff_id == moved_to
    await acknowledged(router, breach)
    await acknowledged(router, contacted)
    assert await clock(store) is None
    assert await store.claim_due(BREACHED_AT + timedelta(days=1), LEASE) == []


class RejectMidBreach(ContactMidBreach):
    """As ContactMidBreach, with a rejection in place of the contact."""

    async def save_breach(self, *args: Any, **kwargs: Any) -> Any:
        if self.contact_at is not None:
            at, self.contact_at = self.contact_at, None
            self.contacts.append(await self.router.on_activity(activity("rejected", at), at))
        return await RedisStore.save_breach(self, *args, **kwargs)


async def test_a_rejection_during_a_breach_frees_the_rep_it_moved_the_lead_to(redis: Redis) -> None:
    """Before, the rejection named the breached hand-off and was dropped as stale: the reassignment
    went out, and the lead stayed with the next rep."""
    store = RejectMidBreach(redis, f"test:{uuid.uuid4().hex}:")
    store.contacts = []
    router = Router(parse_config(CONFIG), store)
    store.router = router
    first = await hand_off(router)
    store.contact_at = BREACHED_AT + timedelta(seconds=1)

    breach = await router.on_due(BREACHED_AT, LEASE)

    [rejected] = store.contacts
    assert kinds(rejected.records) == ["cancelled"] and rejected.records[0].handoff_id == first.handoff_id
    assert breach.records == []  # the lead is gone: no breach, no reassignment goes out
    assert await store.loads() == {"anna": 0, "jonas": 0}
    assert await store.redis.exists(f"{store.prefix}lead:lead-1") == 0
    assert await clock(store) is None

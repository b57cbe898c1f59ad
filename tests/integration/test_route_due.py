"""The SLA timer's breaches against a real Redis: a config that changed under open clocks, and one
lead that fails, cost nobody else's breach."""

from __future__ import annotations

import asyncio
import copy
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from schemas.handoff import Assignee, Handoff
from services.route import domain
from services.route.config import parse_config
from services.route.router import Outcome, Router
from services.route.store import Held, RedisStore
from tests.unit.test_route_domain import CONFIG, make_change

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # a Wednesday: 16:00 in Berlin, 10:00 in New York
LEASE = 30.0


class FailingStore(RedisStore):
    """The real store, except that reading the named leads (as the SLA timer does) raises the given
    exception."""

    failing: dict[str, BaseException]

    async def held(self, lead_id: str) -> Held:
        if lead_id in self.failing:
            raise self.failing[lead_id]
        return await super().held(lead_id)


@pytest.fixture
def store(redis: Redis) -> FailingStore:
    made = FailingStore(redis, f"test:{uuid.uuid4().hex}:")
    made.failing = {}
    return made


async def hand_off(router: Router, lead_id: str, at: datetime, **change: object) -> Handoff:
    """A hot lead handed off, stored and published, as the stage-change agent leaves it."""
    outcome = await router.on_stage_change(make_change(lead_id, **change), at)  # type: ignore[arg-type]
    await router.store.save_states(outcome.states)
    handoff = outcome.states[0].handoff
    await router.published([handoff])
    return handoff


async def acknowledged(router: Router, outcome: Outcome) -> None:
    """What RouteBatch does once the broker acknowledged an outcome's records (arms the clocks)."""
    await router.published([r for r in outcome.records if isinstance(r, Handoff)], outcome.breaches)


def moved(records: Sequence[object]) -> dict[str, Assignee]:
    return {r.lead_id: r.assignee for r in records if isinstance(r, Handoff)}


@pytest.mark.parametrize("sdr_free", [True, False])
async def test_a_team_removed_under_open_clocks_hands_its_breaches_to_the_fallback_team(
    store: FailingStore, sdr_free: bool
) -> None:
    """Removing team `na` from the file used to crash the timer on every tick; its leads go to the
    fallback team's reps, or its queue, and the other team's breach in the same tick is published."""
    before = Router(parse_config(CONFIG), store)
    assert (await hand_off(before, "lead-de", NOW, country="DE")).assignee.team == "dach"
    us = {"country": "US", "channel": "meta_ads", "industry": None, "employees": 10}
    assert (await hand_off(before, "lead-us", NOW + timedelta(minutes=1), **us)).assignee.team == "na"
    without_na = copy.deepcopy(CONFIG)
    without_na["teams"] = [team for team in without_na["teams"] if team["name"] != "na"]
    without_na["rules"] = [rule for rule in without_na["rules"] if rule["team"] != "na"]
    if not sdr_free:
        await store.set_status("sdr", domain.RepStatus(available=False))
    after = Router(parse_config(without_na), store)

    outcome = await after.on_due(NOW + timedelta(minutes=10), LEASE)

    fallback = Assignee(rep_id="sdr" if sdr_free else None, team="queue")
    assert moved(outcome.records) == {"lead-de": Assignee(rep_id="jonas", team="dach"), "lead-us": fallback}
    held = await store.redis.hmget(f"{store.prefix}lead:lead-us", ["team", "rep"])
    assert held == [b"queue", b"sdr" if sdr_free else b""]
    await acknowledged(after, outcome)
    assert await store.claim_due(NOW + timedelta(minutes=11), LEASE) == []  # nothing left to retry


async def test_one_lead_that_fails_costs_the_others_nothing_and_is_retried(
    store: FailingStore, caplog: pytest.LogCaptureFixture
) -> None:
    router = Router(parse_config(CONFIG), store)
    for n in range(3):
        await hand_off(router, f"lead-{n}", NOW + timedelta(seconds=n), country="DE")
    await store.redis.hset(f"{store.prefix}lead:lead-1", "state", "{not json")  # a broken record
    later = NOW + timedelta(minutes=10)

    with caplog.at_level(logging.ERROR, logger="services.route.router"):
        outcome = await router.on_due(later, LEASE)

    assert set(moved(outcome.records)) == {"lead-0", "lead-2"}
    assert any("lead-1" in record.getMessage() for record in caplog.records)
    await acknowledged(router, outcome)
    # Its clock stays claimed for the lease, then comes due again.
    assert await store.claim_due(later + timedelta(seconds=LEASE - 1), LEASE) == []
    assert await store.claim_due(later + timedelta(seconds=LEASE), LEASE) == ["lead-1"]


async def test_redis_gone_mid_tick_keeps_the_breaches_made_and_leaves_the_rest(store: FailingStore) -> None:
    router = Router(parse_config(CONFIG), store)
    for n in range(3):
        await hand_off(router, f"lead-{n}", NOW + timedelta(seconds=n), country="DE")
    store.failing["lead-1"] = RedisConnectionError("Connection refused")
    later = NOW + timedelta(minutes=10)

    outcome = await router.on_due(later, LEASE)

    assert set(moved(outcome.records)) == {"lead-0"}  # already moved in Redis: still published
    await acknowledged(router, outcome)
    assert await store.claim_due(later + timedelta(seconds=LEASE), LEASE) == ["lead-1", "lead-2"]


async def test_cancelling_the_timer_is_not_swallowed(store: FailingStore) -> None:
    router = Router(parse_config(CONFIG), store)
    await hand_off(router, "lead-0", NOW, country="DE")
    store.failing["lead-0"] = asyncio.CancelledError()
    with pytest.raises(asyncio.CancelledError):
        await router.on_due(NOW + timedelta(minutes=10), LEASE)


async def deadline_in_redis(store: RedisStore, lead_id: str) -> datetime:
    score = await store.redis.zscore(f"{store.prefix}sla", lead_id)
    assert score is not None
    return datetime.fromtimestamp(score / 1000, UTC)


MQL = {"temperature": "warm", "lifecycle": "mql", "country": "DE"}  # dach: four business hours


@pytest.mark.parametrize(
    ("sdr_free", "assignee", "due"),
    [
        # dach is closed (18:00 in Berlin): the 24/7 fallback team takes it, four hours from now.
        (True, Assignee(rep_id="sdr", team="queue"), datetime(2026, 11, 25, 21, 0, tzinfo=UTC)),
        # Nobody free anywhere: it waits in dach's queue, so dach's hours count (Thu 09:00-13:00 Berlin).
        (False, Assignee(rep_id=None, team="dach"), datetime(2026, 11, 26, 12, 0, tzinfo=UTC)),
    ],
)
async def test_a_new_hand_offs_deadline_counts_the_hours_of_the_team_it_went_to(
    store: FailingStore, sdr_free: bool, assignee: Assignee, due: datetime
) -> None:
    if not sdr_free:
        await store.set_status("sdr", domain.RepStatus(available=False))
    router = Router(parse_config(CONFIG), store)
    evening = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
    handoff = await hand_off(router, "lead-1", evening, **MQL)
    assert (handoff.assignee, handoff.sla.tier, handoff.sla.due_at) == (assignee, "mql", due)
    assert await deadline_in_redis(store, "lead-1") == due  # the timer fires then too


async def test_a_reassigned_hand_offs_deadline_counts_the_hours_of_the_team_it_went_to(
    store: FailingStore,
) -> None:
    router = Router(parse_config(CONFIG), store)
    handoff = await hand_off(router, "lead-1", NOW - timedelta(hours=5), **MQL)  # Wed 11:00 in Berlin
    assert handoff.assignee == Assignee(rep_id="anna", team="dach")
    assert handoff.sla.due_at == datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    await store.set_status("jonas", domain.RepStatus(available=False))
    late = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)  # 16:30 in Berlin, half an hour before closing

    outcome = await router.on_due(late, LEASE)

    [moved_to] = [record for record in outcome.records if isinstance(record, Handoff)]
    # The 24/7 fallback team took it: four hours from now, not dach's 30 minutes plus Thursday morning.
    assert moved_to.assignee == Assignee(rep_id="sdr", team="queue")
    assert moved_to.sla.due_at == late + timedelta(hours=4)
    await acknowledged(router, outcome)
    assert await deadline_in_redis(store, "lead-1") == late + timedelta(hours=4)


async def test_the_assign_and_breach_scripts_store_the_deadline_of_the_group_picked_from(
    store: FailingStore,
) -> None:
    full = domain.Group("a", (domain.Candidate("x", domain.stride(1), 0),))
    groups = [full, domain.Group("b", (domain.Candidate("y", domain.stride(1), 5),))]
    dues = {"a": NOW + timedelta(hours=1), "b": NOW + timedelta(hours=2)}
    queued = NOW + timedelta(hours=3)
    assigned = await store.assign("lead-1", "h1", "a", groups, queued, dues=dues)
    assert assigned.pick == domain.Pick("b", "y")
    assert await deadline_in_redis(store, "lead-1") == dues["b"]
    waiting = await store.assign("lead-2", "h2", "a", [full], queued, dues=dues)
    assert (waiting.pick, waiting.team) == (None, "a")
    assert await deadline_in_redis(store, "lead-2") == queued  # the queue's, not a rep's
    moved = await store.breach(
        "lead-2", "h2", "h2b", reassign=True, team="a", groups=groups, due=queued, dues=dues
    )
    assert moved.pick == domain.Pick("b", "y")
    # The breach script leaves the clock alone: it is armed at the router's deadline for the team
    # picked from (the test above) once the breach's records are published.
    assert await deadline_in_redis(store, "lead-2") == queued

"""The Redis store against a real Redis: Lua agrees with the pure rotation, and stays atomic."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from schemas.handoff import Handoff
from schemas.sales import RepStatusUpdate
from schemas.stage import StageChange
from services.route import domain
from services.route.router import Outcome, Router
from services.route.store import AssignRequest, RedisStore
from tests.unit.test_route_domain import config as route_config
from tests.unit.test_route_domain import make_change

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.fixture
def store(redis: Redis) -> RedisStore:
    return RedisStore(redis, f"test:{uuid.uuid4().hex}:")


def groups_for(rng: random.Random) -> list[domain.Group]:
    teams = []
    for team in ("a", "b"):
        cands = tuple(
            domain.Candidate(f"{team}{i}", domain.stride(rng.randint(1, 4)), rng.randint(0, 4))
            for i in range(4)
            if rng.random() < 0.8
        )
        teams.append(domain.Group(team, cands))
    return teams


@pytest.mark.parametrize("seed", range(6))
async def test_lua_picks_exactly_what_the_pure_rotation_picks(store: RedisStore, seed: int) -> None:
    rng = random.Random(seed)
    model = domain.Rotation()
    open_leads: dict[str, tuple[str, str]] = {}
    weights = {f"{t}{i}": rng.randint(1, 4) for t in "ab" for i in range(4)}
    caps = {rep: rng.randint(1, 5) for rep in weights}
    for step in range(150):
        if open_leads and rng.random() < 0.35:
            lead = rng.choice(sorted(open_leads))
            hid, rep = open_leads.pop(lead)
            assert await store.release(lead, hid)
            if rep:
                model.release(rep)
            continue
        present = [rep for rep in weights if rng.random() < 0.75]
        groups = [
            domain.Group(
                t,
                tuple(
                    domain.Candidate(r, domain.stride(weights[r]), caps[r])
                    for r in present
                    if r.startswith(t)
                ),
            )
            for t in rng.sample(["a", "b"], 2)
        ]
        expected = model.pick(groups)
        lead = f"lead-{step}"
        result = await store.assign(lead, f"h-{step}", "a", groups, NOW)
        assert result.outcome == "assigned"
        assert result.pick == expected, f"step {step}"
        open_leads[lead] = (f"h-{step}", expected.rep_id if expected else "")
    assert {k: v for k, v in (await store.loads()).items() if v} == {k: v for k, v in model.load.items() if v}


@pytest.mark.parametrize("seed", range(4))
async def test_assign_many_in_one_round_trip_picks_what_one_at_a_time_picks(redis: Redis, seed: int) -> None:
    """A batch's assignments share one pipeline; each script must still see the loads the ones
    before it left (capacity fills up mid-batch, a lead repeats, a repeat of the same hand-off)."""
    rng = random.Random(seed)
    groups = [
        domain.Group(
            "a", (domain.Candidate("a0", domain.stride(1), 2), domain.Candidate("a1", domain.stride(2), 1))
        ),
        domain.Group("b", (domain.Candidate("b0", domain.stride(1), 1),)),
    ]
    requests = []
    for step in range(30):
        lead = f"lead-{rng.randint(0, 12)}"
        hid = f"h-{lead}" if rng.random() < 0.5 else f"h-{step}"
        requests.append(AssignRequest(lead, hid, "a", groups, NOW + timedelta(minutes=step)))
    one_by_one = RedisStore(redis, f"test:{uuid.uuid4().hex}:")
    batched = RedisStore(redis, f"test:{uuid.uuid4().hex}:")

    expected = [await one_by_one.assign(r.lead_id, r.hid, r.team, r.groups, r.due) for r in requests]
    assert await batched.assign_many(requests) == expected
    assert {o.outcome for o in expected} >= {"assigned", "existing"}  # the case is not trivial
    assert any(o.outcome == "assigned" and o.pick is None for o in expected)  # capacity ran out
    assert await batched.loads() == await one_by_one.loads()
    assert await batched.assign_many([]) == []


async def test_routing_a_batch_answers_each_change_in_order(store: RedisStore) -> None:
    """Changes that want no hand-off keep their place (an empty outcome); a change repeated in the
    batch gets the same hand-off again, which the batch drops (RouteBatch.add)."""
    router = Router(route_config(), store)
    hot = make_change("lead-hot", email="x@other.example", occurred_at=NOW)
    cold = make_change("lead-cold", temperature="cold", sales_ready=False, occurred_at=NOW)
    second = make_change("lead-2", email="y@other.example", occurred_at=NOW)
    outcomes = await router.on_stage_changes([cold, hot, second, hot], now=NOW)
    assert [len(o.records) for o in outcomes] == [0, 2, 2, 2]
    first, repeat = outcomes[1].records[0], outcomes[3].records[0]
    assert isinstance(first, Handoff) and first.lead_id == "lead-hot" and repeat == first
    assert outcomes[2].records[0].lead_id == "lead-2"
    assert sum((await store.loads()).values()) == 2  # the repeat took no second rep slot
    assert await router.on_stage_changes([cold]) == [Outcome()]


async def test_a_stage_change_from_before_an_erasure_does_not_assign_the_lead_again(
    store: RedisStore,
) -> None:
    """docs/privacy.md: a stage change score published a moment before it erased the lead, reaching
    route after route's erasure, must not give the lead (and its contact) to a rep again. The
    assign script refuses it in the same step as it would assign; a change from after the erasure
    (the person came back) is routed as usual."""
    router = Router(route_config(), store)
    [first] = await router.on_stage_changes([make_change("gone", event_id="sc-1", occurred_at=NOW)], now=NOW)
    assert first.records
    erased_at = NOW + timedelta(seconds=5)
    assert (await store.erase("gone", erased_at))["assignments"] == 1
    in_flight = make_change("gone", event_id="sc-2", occurred_at=NOW + timedelta(seconds=4))
    [dropped] = await router.on_stage_changes([in_flight], now=NOW + timedelta(seconds=6))
    assert dropped == Outcome(erased=True)
    assert await store.state("gone") is None and sum((await store.loads()).values()) == 0
    guard = [key async for key in store.redis.scan_iter(f"{store.prefix}erased:*")]
    assert len(guard) == 1 and b"gone" not in guard[0]  # a digest, not the lead id
    assert 0 < await store.redis.ttl(guard[0]) <= store.erasure_guard
    await store.erase("gone", NOW)  # an older erasure replayed: the guard keeps the later time
    assert (await router.on_stage_changes([in_flight], now=NOW + timedelta(seconds=7)))[0].erased

    back = make_change("gone", event_id="sc-3", occurred_at=erased_at + timedelta(seconds=1))
    [routed] = await router.on_stage_changes([back], now=NOW + timedelta(seconds=8))
    assert [type(r).__name__ for r in routed.records] == ["Handoff", "SlaEvent"]


async def test_an_erasure_between_assigning_and_storing_a_hand_off_is_not_undone(store: RedisStore) -> None:
    """Route's privacy agent runs beside its stage-change batches: an erasure may come between the
    assign script and the batch storing its hand-offs' states. Writing the state then re-created the
    lead's hash with its contact, published the hand-off, and left the lead unroutable."""
    router = Router(route_config(), store)
    [routed] = await router.on_stage_changes([make_change("gone", occurred_at=NOW)], now=NOW)
    kept = make_change("stays", email="s@other.example", occurred_at=NOW)
    [other] = await router.on_stage_changes([kept], now=NOW)
    await store.erase("gone", NOW + timedelta(seconds=1))
    stored = await router.stored([routed, other])
    assert stored == [Outcome(erased=True), other]
    assert not await store.redis.exists(f"{store.prefix}lead:gone")
    assert (await store.state("stays")) is not None
    back = make_change("gone", event_id="sc-back", occurred_at=NOW + timedelta(seconds=2))
    [again] = await router.on_stage_changes([back], now=NOW + timedelta(seconds=3))
    assert [type(r).__name__ for r in again.records] == ["Handoff", "SlaEvent"]  # the person came back


async def test_a_replayed_assignment_changes_nothing(store: RedisStore) -> None:
    group = [
        domain.Group(
            "a", (domain.Candidate("x", domain.stride(1), 5), domain.Candidate("y", domain.stride(1), 5))
        )
    ]
    first = await store.assign("lead-1", "h1", "a", group, NOW)
    assert first.outcome == "assigned" and first.pick == domain.Pick("a", "x")
    again = await store.assign("lead-1", "h1", "a", group, NOW)
    assert (again.outcome, again.handoff_id, again.published) == ("existing", "h1", False)
    await store.mark_published([("lead-1", "h-stale"), ("lead-2", "h1")])  # not this lead's hand-off
    assert (await store.assign("lead-1", "h1", "a", group, NOW)).published is False
    await store.mark_published([("lead-1", "h1")])
    assert (await store.assign("lead-1", "h1", "a", group, NOW)).published is True
    other = await store.assign("lead-1", "h-other", "a", group, NOW)
    assert other.outcome == "existing" and other.handoff_id == "h1"  # one lead, one rep at a time
    assert await store.loads() == {"x": 1}
    assert await store.release("lead-1", "h1")
    assert not await store.release("lead-1", "h1")
    assert await store.loads() == {"x": 0}
    # Replaying the stage change after the lead was closed does not hand it off again.
    assert (await store.assign("lead-1", "h1", "a", group, NOW)).outcome == "duplicate"
    # A new sales-ready moment (new id) does: the lead was recycled.
    assert (await store.assign("lead-1", "h2", "a", group, NOW)).outcome == "assigned"


async def test_concurrent_workers_never_double_assign_or_overfill(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    clients = [Redis.from_url(redis_url) for _ in range(4)]
    stores = [RedisStore(client, prefix) for client in clients]
    group = [domain.Group("a", tuple(domain.Candidate(f"r{i}", domain.stride(i + 1), 7) for i in range(4)))]
    try:
        # 60 leads, each delivered to every worker (as after a rebalance): 240 racing calls.
        calls = [
            stores[w].assign(f"lead-{n}", f"h-{n}", "a", group, NOW) for n in range(60) for w in range(4)
        ]
        random.Random(1).shuffle(calls)
        results = await asyncio.gather(*calls)
        assigned = [r for r in results if r.outcome == "assigned"]
        assert len(assigned) == 60
        assert all(r.outcome == "existing" for r in results if r.outcome != "assigned")
        with_rep = [r for r in assigned if r.pick]
        assert len(with_rep) == 28  # total capacity 4 x 7; the rest wait in the team queue
        loads = await stores[0].loads()
        assert loads == {f"r{i}": 7 for i in range(4)}
    finally:
        for client in clients:
            await client.aclose()


async def test_claims_lease_deadlines_and_breach_checks_the_clock(store: RedisStore) -> None:
    group = [
        domain.Group(
            "a", (domain.Candidate("x", domain.stride(1), 5), domain.Candidate("y", domain.stride(1), 5))
        )
    ]
    await store.assign("lead-1", "h1", "a", group, NOW)
    await store.assign("lead-2", "h2", "a", group, NOW + timedelta(minutes=10))
    assert await store.claim_due(NOW, lease_seconds=30) == ["lead-1"]
    assert await store.claim_due(NOW, lease_seconds=30) == []  # leased to the first claimer
    assert await store.claim_due(NOW + timedelta(seconds=31), lease_seconds=30) == ["lead-1"]
    assert (
        await store.breach("lead-1", "wrong", "h1b", reassign=True, team="a", groups=group, due=NOW)
    ).outcome == ("stale")
    moved = await store.breach(
        "lead-1",
        "h1",
        "h1b",
        reassign=True,
        team="a",
        groups=[domain.Group("a", group[0].candidates[1:])],
        due=NOW,
    )
    assert moved.outcome == "assigned" and moved.pick == domain.Pick("a", "y")
    assert await store.loads() == {"x": 0, "y": 2}  # lead-1 moved from x to y, lead-2 was already on y
    # Until its state is stored, a repeat of the same breach (a retry after a failure) gets the same
    # answer, and moves nobody again.
    again = await store.breach("lead-1", "h1", "h1b", reassign=True, team="a", groups=group, due=NOW)
    assert again.outcome == "assigned" and again.pick == domain.Pick("a", "y")
    assert await store.loads() == {"x": 0, "y": 2}
    # A contact stops the clock (`RedisStore.contact`); a racing breach then sees it stopped.
    assert await store.redis.zrem(f"{store.prefix}sla", "lead-1")
    assert (
        await store.breach("lead-1", "h1b", "h1c", reassign=True, team="a", groups=group, due=NOW)
    ).outcome == ("stale")
    kept = await store.breach("lead-2", "h2", "h2b", reassign=False, team="a", groups=group, due=NOW)
    assert kept.outcome == "kept"
    # The clock stops once the breach's records are published, so a failure before that retries it.
    assert await store.claim_due(NOW + timedelta(hours=1), lease_seconds=30) == ["lead-2"]


async def test_rep_status_round_trip(store: RedisStore) -> None:
    until = NOW + timedelta(days=3)
    await store.set_status("x", domain.RepStatus(available=False, capacity=3, out_of_office_until=until))
    assert await store.statuses() == {"x": domain.RepStatus(False, 3, until)}


async def test_a_replay_after_a_crash_before_the_state_was_stored_hands_off_the_same_assignment(
    store: RedisStore,
) -> None:
    """A batch assigns each lead as it goes and stores the hand-offs at commit: a worker killed in
    between left an assignment without a state. The replayed change must publish that assignment."""
    router = Router(route_config(), store)
    change = make_change("lead-crash", email="x@other.example", occurred_at=NOW)
    first = await router.on_stage_change(change, now=NOW)
    assert [type(r).__name__ for r in first.records] == ["Handoff", "SlaEvent"] and first.states
    made = first.states[0].handoff  # never stored: the worker died before its batch committed

    again = await router.on_stage_change(change, now=NOW + timedelta(seconds=30))
    replayed = again.states[0].handoff
    assert again.records[0] == replayed and replayed.handoff_id == made.handoff_id
    assert replayed.assignee == made.assignee and replayed.sla.due_at == made.sla.due_at
    assert await store.loads() == {made.assignee.rep_id: 1}  # still one lead for the rep

    await store.save_states(again.states)
    stored = await router.on_stage_change(change, now=NOW + timedelta(seconds=60))
    assert stored.records[0] == replayed and stored.states == []  # the stored hand-off, as it is
    await router.published([replayed])
    assert (await router.on_stage_change(change, now=NOW + timedelta(seconds=90))).records == []


async def test_concurrent_rep_status_updates_each_keep_their_field(store: RedisStore) -> None:
    """A PUT and a rep_status record at once: both merge, neither overwrites the other's field."""
    router = Router(route_config(), store)
    for round_ in range(20):
        await store.redis.hdel(store._key("status"), "anna")
        off = RepStatusUpdate(event_id=f"off-{round_}", occurred_at=NOW, rep_id="anna", available=False)
        cap = RepStatusUpdate(event_id=f"cap-{round_}", occurred_at=NOW, rep_id="anna", capacity=1)
        until = NOW + timedelta(days=1)
        away = RepStatusUpdate(
            event_id=f"away-{round_}", occurred_at=NOW, rep_id="anna", out_of_office_until=until
        )
        answers = await asyncio.gather(*(router.on_rep_status(u) for u in (off, cap, away)))
        assert (await store.statuses())["anna"] == domain.RepStatus(False, 1, until), f"round {round_}"
        assert answers[0].available is False and answers[1].capacity == 1
    back = RepStatusUpdate.model_validate(
        {"event_id": "back", "occurred_at": NOW.isoformat(), "rep_id": "anna", "capacity": None}
    )
    assert await router.on_rep_status(back) == domain.RepStatus(False, None, NOW + timedelta(days=1))
    assert (await store.statuses())["anna"] == domain.RepStatus(False, None, NOW + timedelta(days=1))


async def merged(store: RedisStore, status: domain.RepStatus, update: RepStatusUpdate) -> domain.RepStatus:
    """`status` stored for anna, then `update` merged into it as route merges it (in Redis)."""
    await store.set_status("anna", status)
    return await store.update_status("anna", domain.status_patch(update))


async def test_rep_status_update_overrides_only_what_it_sets(store: RedisStore) -> None:
    status = domain.RepStatus(available=False, capacity=5)
    update = RepStatusUpdate(event_id="e", occurred_at=NOW, rep_id="anna", capacity=9)
    assert await merged(store, status, update) == domain.RepStatus(available=False, capacity=9)


async def test_an_explicit_null_resets_a_rep_status_field(store: RedisStore) -> None:
    """A rep back early clears the absence; null capacity or availability returns to the config."""
    away = datetime(2026, 12, 1, tzinfo=UTC)
    status = domain.RepStatus(available=False, capacity=5, out_of_office_until=away)
    back = RepStatusUpdate.model_validate_json(
        '{"event_id": "e", "occurred_at": "2026-11-25T10:00:00Z", "rep_id": "anna",'
        ' "out_of_office_until": null, "capacity": null}'
    )
    assert await merged(store, status, back) == domain.RepStatus(available=False)
    rep, team = route_config().team("dach").reps[0], route_config().team("dach")
    assert domain.unavailable_reason(rep, team, await merged(store, status, back), NOW) == "unavailable"
    omitted = RepStatusUpdate(event_id="e", occurred_at=NOW, rep_id="anna")
    assert await merged(store, status, omitted) == status


async def test_one_lead_without_a_usable_contact_costs_the_batch_nothing(store: RedisStore) -> None:
    """Its contact could not be built after the assign script ran for the whole batch: every lead got
    a rep and a clock, none a hand-off, and the replay raised again. Now that lead is left out before
    any assignment (the agent dead-letters it) and the others are handed off."""
    router = Router(route_config(), store)
    good = make_change("lead-ok", email="x@other.example", occurred_at=NOW)
    long_name = make_change("lead-long", email="y@other.example", occurred_at=NOW)
    data = long_name.model_dump(mode="json")
    data["profile"]["company"] = None
    data["profile"]["firmographics"]["company_name"] = "Acme " + "Holding " * 40
    long_name = StageChange.model_validate(data)
    odd = make_change("lead-odd", email="z@other.example", occurred_at=NOW)
    # Not what a decoder makes, but what a contact may still fail on: a value of the wrong type.
    odd = odd.model_copy(update={"profile": odd.profile.model_copy(update={"first_name": 42})})

    outcomes = await router.on_stage_changes([good, odd, long_name], now=NOW)

    assert [len(o.records) for o in outcomes] == [2, 0, 2]
    assert outcomes[1].unusable is not None and "first_name" in outcomes[1].unusable
    assert outcomes[0].unusable is None and outcomes[2].unusable is None
    shortened = outcomes[2].records[0]
    assert isinstance(shortened, Handoff) and shortened.contact.company is not None
    assert shortened.contact.company.startswith("Acme Holding") and len(shortened.contact.company) == 256
    assert sum((await store.loads()).values()) == 2
    assert await store.redis.exists(store._key("lead", "lead-odd")) == 0
    assert await store.open_clocks() == 2

"""Reminders before the SLA deadline (`due_soon`), the router against a real Redis: each running
deadline is reminded once, read once however many ticks it waits, and never after a contact, during
a breach or on a clock a kept breach re-armed; a reassignment's new hand-off has its own."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from schemas.handoff import Handoff, SlaEvent, SlaEventKind
from schemas.sales import SalesActivity
from services.route.config import RoutingConfig, parse_config
from services.route.router import Outcome, Router
from services.route.store import RedisStore
from tests.integration.test_route_due import hand_off as hand_off_at
from tests.route_breaches import NOW, hand_off
from tests.unit.test_route_domain import CONFIG, REMINDING_SLA

pytestmark = pytest.mark.integration

LEASE = 30.0
REMIND_AT = NOW + timedelta(minutes=3)  # hot: due in 5 minutes, reminded 2 minutes before
DUE = NOW + timedelta(minutes=5)


class CountingStore(RedisStore):
    """The real store, counting the lead states the reminder check reads."""

    reads: int = 0

    async def held_raw(self, lead_ids: Sequence[str]) -> list[list[Any]]:
        self.reads += len(lead_ids)
        return await super().held_raw(lead_ids)


@pytest.fixture
def store(redis: Redis) -> CountingStore:
    return CountingStore(redis, f"test:{uuid.uuid4().hex}:", reminder_keep_seconds=5)


def reminding(**sla: Any) -> RoutingConfig:
    return parse_config({**CONFIG, "sla": {**REMINDING_SLA, **sla}})


# As shipped: mql reminds 30 minutes ahead, so the timer looks that far and sees a hot lead at once.
HOT, MQL = REMINDING_SLA["tiers"]
SHIPPED_LIKE = [HOT, {**MQL, "remind_before": "PT30M"}]


def reminders(outcome: Outcome) -> list[SlaEvent]:
    return [r for r in outcome.records if isinstance(r, SlaEvent) and r.kind is SlaEventKind.DUE_SOON]


async def acknowledged(router: Router, outcome: Outcome, at: datetime) -> None:
    """What RouteBatch does once the broker acknowledged an outcome's records (at `at`)."""
    await router.reminded(outcome.reminded, at)
    await router.published([r for r in outcome.records if isinstance(r, Handoff)], outcome.breaches)


async def test_a_deadline_is_reminded_once_and_read_once_while_it_waits(store: CountingStore) -> None:
    router = Router(reminding(tiers=SHIPPED_LIKE), store)
    handoff = await hand_off(router, "lead-1")
    assert handoff.sla.due_at == DUE

    assert (await router.on_reminders(NOW)).records == []
    assert store.reads == 1  # read once, and marked for its reminder's time
    for second in range(1, 180, 3):
        assert (await router.on_reminders(NOW + timedelta(seconds=second))).records == []
    assert store.reads == 1  # sixty ticks more cost no read of the lead

    first = await router.on_reminders(REMIND_AT)
    assert store.reads == 2  # its time came: read again (a contact meanwhile would stop it)
    [event] = reminders(first)
    assert (event.handoff_id, event.due_at, event.notify) == (handoff.handoff_id, DUE, ["anna"])
    # The broker did not acknowledge it (a failed publish): the next tick publishes the same event.
    [again] = reminders(await router.on_reminders(REMIND_AT + timedelta(seconds=1)))
    assert again.event_id == event.event_id
    await acknowledged(router, first, REMIND_AT + timedelta(seconds=1))
    reads = store.reads
    for second in range(2, 60, 10):
        assert (await router.on_reminders(REMIND_AT + timedelta(seconds=second))).records == []
    assert store.reads == reads  # acknowledged: never read again


async def test_a_contacted_lead_is_not_reminded(store: CountingStore) -> None:
    router = Router(reminding(), store)
    for lead in ("lead-1", "lead-2"):
        await hand_off(router, lead)
    contact = SalesActivity.model_validate(
        {
            "event_id": "act-1",
            "occurred_at": (NOW + timedelta(minutes=1)).isoformat(),
            "lead_id": "lead-1",
            "activity": "contacted",
        }
    )
    await router.on_activity(contact, NOW + timedelta(minutes=1))
    assert [event.lead_id for event in reminders(await router.on_reminders(REMIND_AT))] == ["lead-2"]


async def test_a_tier_without_remind_before_is_not_reminded(store: CountingStore) -> None:
    hot = {key: value for key, value in HOT.items() if key != "remind_before"}
    router = Router(reminding(tiers=[hot, SHIPPED_LIKE[1]]), store)
    await hand_off(router, "lead-hot")
    mql = await hand_off_at(router, "lead-mql", NOW, temperature="warm", lifecycle="mql", country="DE")
    assert mql.sla.tier == "mql"  # four business hours: due 15:00 in Berlin
    for second in range(0, 300, 10):
        assert (await router.on_reminders(NOW + timedelta(seconds=second))).records == []
    assert store.reads == 1  # looked at once (mql reminds 30 minutes ahead), then marked done
    silent = Router(parse_config(CONFIG), store)  # no tier reminds: the timer reads nothing at all
    assert (await silent.on_reminders(REMIND_AT)).records == [] and store.reads == 1
    # The mql lead's tier does remind, 30 minutes before its deadline.
    [event] = reminders(await router.on_reminders(mql.sla.due_at - timedelta(minutes=30)))
    assert (event.lead_id, event.tier) == ("lead-mql", "mql")


async def test_a_reassigned_lead_is_reminded_of_its_new_deadline(store: CountingStore) -> None:
    router = Router(reminding(), store)
    first = await hand_off(router, "lead-1")
    await acknowledged(router, await router.on_reminders(REMIND_AT), REMIND_AT)
    breach = await router.on_due(DUE, LEASE)
    # While the breach waits for the broker its clock is the claim's lease, inside the look-ahead:
    assert (await router.on_reminders(DUE + timedelta(seconds=1))).records == []
    await acknowledged(router, breach, DUE)
    [moved] = [r for r in breach.records if isinstance(r, Handoff)]
    assert moved.handoff_id != first.handoff_id and moved.assignee.rep_id == "jonas"
    [event] = reminders(await router.on_reminders(moved.sla.due_at - timedelta(minutes=2)))
    assert (event.handoff_id, event.due_at, event.notify) == (moved.handoff_id, moved.sla.due_at, ["jonas"])
    assert event.event_id != first.handoff_id


async def test_a_kept_breach_rearmed_for_escalation_does_not_remind_the_rep_again(
    store: CountingStore,
) -> None:
    router = Router(reminding(reassign_on_breach=False, escalation=["head@example.com"]), store)
    await hand_off(router, "lead-1")
    assert len(reminders(await router.on_reminders(REMIND_AT))) == 1  # its own deadline's reminder
    breach = await router.on_due(DUE, LEASE)
    await acknowledged(router, breach, DUE)
    rearmed = await store.redis.zscore(f"{store.prefix}sla", "lead-1")
    assert rearmed == int((DUE + timedelta(minutes=5)).timestamp() * 1000)  # armed again to escalate
    for second in range(0, 120, 20):
        at = DUE + timedelta(minutes=3, seconds=second)
        assert (await router.on_reminders(at)).records == []


async def test_an_unreadable_lead_costs_the_others_nothing_and_the_marks_name_no_lead(
    store: CountingStore, caplog: pytest.LogCaptureFixture
) -> None:
    router = Router(reminding(), store)
    for lead in ("lead-a", "lead-b"):
        await hand_off(router, lead)
    await store.redis.hset(f"{store.prefix}lead:lead-a", "state", "{not json")
    with caplog.at_level(logging.ERROR, logger="services.route.router"):
        outcome = await router.on_reminders(REMIND_AT)
    assert [event.lead_id for event in reminders(outcome)] == ["lead-b"]
    assert any("lead-a" in record.getMessage() for record in caplog.records)
    await acknowledged(router, outcome, REMIND_AT)
    keys = [key.decode() async for key in store.redis.scan_iter(f"{store.prefix}remind:*")]
    assert len(keys) == 2 and not any("lead-" in key for key in keys)  # erasure need not find them
    for key in keys:  # kept until a little after the deadline (keep: 5 s), by the worker's clock
        assert (
            0 < await store.redis.pttl(key) <= (DUE - REMIND_AT + timedelta(seconds=5)).total_seconds() * 1000
        )
    assert (await router.on_reminders(REMIND_AT + timedelta(seconds=1))).records == []

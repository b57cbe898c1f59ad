"""A breach whose records were stored but whose publish failed is published again, with the same ids,
after the claim's lease, and its new deadline is armed only once the broker acknowledged them.

The worker test fails the send for real records on the real broker; the others drive the router and
the real Redis store the way the SLA timer and the activity agent do."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import faust
import pytest
import yaml
from aiokafka.errors import KafkaTimeoutError
from redis.asyncio import Redis

from schemas.base import utcnow
from schemas.handoff import Assignee, Handoff, SlaEvent, SlaEventKind
from schemas.sales import SalesActivity
from schemas.topics import TopicName
from services.devstack.broker import EmbeddedBroker
from services.route import domain
from services.route.app import RouteService
from services.route.config import parse_config
from services.route.router import Outcome, Router
from services.route.store import RedisStore
from services.runtime.batch import Outbox
from tests.eventually import eventually
from tests.integration.test_route_service import RULES, read, record, running, settings_for
from tests.kafka import produce
from tests.route_breaches import NOW, hand_off, kinds
from tests.unit.test_route_domain import CONFIG, make_change

pytestmark = pytest.mark.integration

LEASE = 30.0
SLA_SECONDS = 6.0
CLAIM_SECONDS = 1.0


# --- the worker, on the real broker ----------------------------------------------------------------


class BreachSendFails(Outbox):
    """The worker's real outbox, except that the first `failures` breach records are refused as
    aiokafka refuses a record it cannot deliver (KafkaTimeoutError), before any of their batch reached
    the broker: the timer's batch fails after `save_breach` stored the breach's state."""

    failures = 0

    async def send(self, topic: faust.TopicT, key: str | bytes | None, record: Any) -> Awaitable[Any]:
        if isinstance(record, SlaEvent) and record.kind == SlaEventKind.BREACHED and BreachSendFails.failures:
            BreachSendFails.failures -= 1
            raise KafkaTimeoutError("the broker took no records within the request timeout")
        return await super().send(topic, key, record)


@contextlib.contextmanager
def failing_breach_sends(service: RouteService, count: int) -> Iterator[None]:
    BreachSendFails.failures = count
    service.outbox = lambda: BreachSendFails(service.name, service.metrics, service.app)  # type: ignore[method-assign]
    try:
        yield
    finally:
        BreachSendFails.failures = 0


@pytest.fixture
def rules(tmp_path: Path, kept: bool) -> Path:
    """Route's test rules with a six-second SLA; `kept`: a breach keeps the lead with its rep."""
    path = tmp_path / "routing.yaml"
    sla = {**RULES["sla"], "tiers": [{"name": "hot", "minutes": SLA_SECONDS / 60, "temperatures": ["hot"]}]}
    if kept:
        sla["reassign_on_breach"] = False
    path.write_text(yaml.safe_dump({**RULES, "sla": sla}))
    return path


@pytest.fixture
async def worker(
    broker: EmbeddedBroker, redis_url: str, suffix: str, rules: Path
) -> AsyncIterator[RouteService]:
    settings = settings_for(broker, redis_url, suffix, rules, f"test:{uuid.uuid4().hex}:")
    async with running(settings.model_copy(update={"sla_claim_seconds": CLAIM_SECONDS})) as service:
        yield service


def sla_check_errors(service: RouteService) -> float:
    value = service.metrics.registry.get_sample_value(
        "leadpipe_route_sla_check_failures_total", {"kind": "error"}
    )
    return value or 0.0


@pytest.mark.parametrize("kept", [False, True], ids=["reassigned", "kept"])
async def test_a_breach_whose_publish_failed_is_published_within_the_lease(
    worker: RouteService, broker: EmbeddedBroker, kept: bool
) -> None:
    change = make_change("lead-1", email="jane@other.example", occurred_at=utcnow())  # emea: anna, ben
    with failing_breach_sends(worker, 1):
        await produce(
            broker.bootstrap_servers, worker.settings.topic(TopicName.STAGE_CHANGES), [record(change)]
        )
        first = (await read(broker, worker, TopicName.HANDOFFS, lambda hs: len(hs) >= 1))[0]
        assert first.assignee == Assignee(rep_id="anna", team="emea")
        moved_to = domain.handoff_id("lead-1", first.handoff_id, 1)

        def breached_and_moved(events: list[SlaEvent]) -> bool:
            seen = {(e.kind, e.handoff_id) for e in events}
            return (SlaEventKind.BREACHED, first.handoff_id) in seen and (
                kept or (SlaEventKind.REASSIGNED, moved_to) in seen
            )

        events = await read(broker, worker, TopicName.SLA, breached_and_moved, within=SLA_SECONDS * 3)
        seen_at = utcnow()
        assert breached_and_moved(events), [(e.kind.value, e.handoff_id, e.breach_count) for e in events]
        assert BreachSendFails.failures == 0, "the breach's first publish was not refused"
        assert sla_check_errors(worker) == 1
    breached = [e for e in events if e.kind == SlaEventKind.BREACHED]
    assert [(e.handoff_id, e.breach_count) for e in breached] == [(first.handoff_id, 1)]
    assert breached[0].occurred_at >= first.sla.due_at
    store, lead_key = worker.store, f"{worker.store.prefix}lead:lead-1"
    if kept:
        # Published: the clock stops (a kept breach ends it) and nothing is left to publish.
        await eventually(lambda: no_clock(store), within=5)
        assert await store.redis.hget(lead_key, "pending") is None
        return
    [reassigned] = [e for e in events if e.kind == SlaEventKind.REASSIGNED]
    assert reassigned.assignee == Assignee(rep_id="ben", team="emea")
    # Published soon after the lease, well before ben's own deadline (not by its next breach).
    assert seen_at < reassigned.due_at
    handoffs = await read(broker, worker, TopicName.HANDOFFS, lambda hs: len(hs) >= 2, within=5)
    assert [(h.handoff_id, h.assignee.rep_id) for h in handoffs] == [
        (first.handoff_id, "anna"),
        (moved_to, "ben"),
    ]
    assert handoffs[1].sla.due_at == reassigned.due_at
    # Acknowledged: marked published, and the clock runs to ben's deadline.
    await eventually(lambda: marked_published(store), within=5)
    assert await store.redis.hget(lead_key, "pending") is None
    deadline = await store.redis.zscore(f"{store.prefix}sla", "lead-1")
    assert deadline == int(handoffs[1].sla.due_at.timestamp() * 1000)


async def marked_published(store: RedisStore) -> bool:
    return await store.redis.hget(f"{store.prefix}lead:lead-1", "published") == b"1"


async def no_clock(store: RedisStore) -> bool:
    return await store.redis.zscore(f"{store.prefix}sla", "lead-1") is None


# --- the router and the real Redis store -----------------------------------------------------------


@pytest.fixture
def store(redis: Redis) -> RedisStore:
    return RedisStore(redis, f"test:{uuid.uuid4().hex}:")


def handoffs_of(outcome: Outcome) -> list[Handoff]:
    return [r for r in outcome.records if isinstance(r, Handoff)]


async def acknowledged(router: Router, outcome: Outcome) -> None:
    """What RouteBatch does once the broker acknowledged an outcome's records."""
    await router.published(handoffs_of(outcome), outcome.breaches)


async def deadline(store: RedisStore, lead_id: str = "lead-1") -> datetime | None:
    score = await store.redis.zscore(f"{store.prefix}sla", lead_id)
    return None if score is None else datetime.fromtimestamp(score / 1000, UTC)


def contact(lead_id: str, at: datetime, kind: str = "contacted") -> SalesActivity:
    body = {"event_id": uuid.uuid4().hex, "occurred_at": at.isoformat(), "lead_id": lead_id, "activity": kind}
    return SalesActivity.model_validate(body)


@pytest.mark.parametrize("kept", [False, True], ids=["reassigned", "kept"])
async def test_an_unacknowledged_breach_is_published_again_after_the_lease_and_nobody_moves_twice(
    store: RedisStore, kept: bool
) -> None:
    sla = {"reassign_on_breach": False} if kept else {}
    router = Router(parse_config({**CONFIG, "sla": sla}), store)
    first = await hand_off(router, "lead-1")
    breached_at = NOW + timedelta(minutes=10)

    tried = await router.on_due(breached_at, LEASE)  # stored; then its publish fails

    assert kinds(tried.records) == (["breached"] if kept else ["breached", "handoff", "reassigned"])
    # Nothing to publish before the lease runs out; then the very same records, nobody moved again.
    assert (await router.on_due(breached_at + timedelta(seconds=LEASE - 1), LEASE)).records == []
    again = await router.on_due(breached_at + timedelta(seconds=LEASE), LEASE)
    assert again.records == tried.records
    assert await store.loads() == ({"anna": 1} if kept else {"anna": 0, "jonas": 1})
    state = await store.state("lead-1")
    assert state is not None and state.breach_count == 1
    # Until the broker acknowledged them, the clock is the claim's lease, not the new deadline.
    assert await deadline(store) == breached_at + timedelta(seconds=2 * LEASE)

    await acknowledged(router, again)

    lead_key = f"{store.prefix}lead:lead-1"
    assert [await store.redis.hget(lead_key, f) for f in ("pending", "pending_due", "pending_breach")] == [
        None
    ] * 3
    if kept:
        assert await deadline(store) is None  # a kept breach stops the clock
        assert state.handoff.handoff_id == first.handoff_id
        return
    moved = handoffs_of(again)[0]
    assert moved.assignee == Assignee(rep_id="jonas", team="dach") and state.handoff == moved
    assert await store.redis.hget(lead_key, "published") == b"1"
    assert await deadline(store) == moved.sla.due_at
    assert await store.claim_due(moved.sla.due_at - timedelta(seconds=1), LEASE) == []


async def test_a_contact_while_a_breach_waits_for_the_broker_publishes_it_first_and_stops_the_clock(
    store: RedisStore,
) -> None:
    router = Router(parse_config(CONFIG), store)
    first = await hand_off(router, "lead-1")
    breached_at = NOW + timedelta(minutes=10)
    tried = await router.on_due(breached_at, LEASE)  # its publish fails
    moved = handoffs_of(tried)[0]

    contacted = await router.on_activity(contact("lead-1", breached_at + timedelta(seconds=5)))

    # The breach's records go out ahead of the contact's `met`, which is for the lead's new hand-off.
    assert kinds(contacted.records) == ["breached", "handoff", "reassigned", "met"]
    assert contacted.records[:3] == tried.records
    met = contacted.records[3]
    assert met.handoff_id == moved.handoff_id != first.handoff_id and met.assignee.rep_id == "jonas"
    assert contacted.first_contact_seconds is not None
    await acknowledged(router, contacted)
    assert await deadline(store) is None  # not re-armed at jonas's deadline: the contact stopped it
    state = await store.state("lead-1")
    assert state is not None and state.contacted and state.handoff == moved
    assert await store.claim_due(moved.sla.due_at + timedelta(days=1), LEASE) == []
    # The timer's own late acknowledgement changes nothing.
    await acknowledged(router, tried)
    assert await deadline(store) is None


async def test_a_lead_erased_while_its_breach_waits_for_the_broker_has_nothing_published(
    store: RedisStore,
) -> None:
    router = Router(parse_config(CONFIG), store)
    await hand_off(router, "lead-1")
    breached_at = NOW + timedelta(minutes=10)
    tried = await router.on_due(breached_at, LEASE)  # its publish fails

    await store.erase("lead-1", breached_at + timedelta(seconds=1))

    assert (await router.on_due(breached_at + timedelta(seconds=LEASE), LEASE)).records == []
    await acknowledged(router, tried)  # a late acknowledgement does not bring the lead's hash back
    assert await store.redis.exists(f"{store.prefix}lead:lead-1") == 0
    assert await deadline(store) is None


async def test_a_rejection_while_a_breach_waits_for_the_broker_publishes_the_breach_with_it(
    store: RedisStore,
) -> None:
    router = Router(parse_config(CONFIG), store)
    await hand_off(router, "lead-1")
    breached_at = NOW + timedelta(minutes=10)
    tried = await router.on_due(breached_at, LEASE)  # its publish fails

    rejected = await router.on_activity(contact("lead-1", breached_at + timedelta(seconds=5), "rejected"))

    # The lead's hash (and so its breach's records) is gone: the records go out with the rejection.
    assert kinds(rejected.records) == ["breached", "handoff", "reassigned", "cancelled"]
    assert rejected.records[:3] == tried.records
    assert rejected.records[3].handoff_id == handoffs_of(tried)[0].handoff_id
    assert await store.loads() == {"anna": 0, "jonas": 0}

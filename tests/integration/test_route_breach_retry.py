"""An SLA breach that fails after its Redis script moved the lead is retried after the claim's lease,
and the retry stores and publishes the same reassignment (real Redis). Its publish failing is
tests/integration/test_route_breach_publish.py."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from schemas.handoff import Assignee, Handoff
from services.route import domain
from services.route.config import parse_config
from services.route.router import Router
from services.route.store import BreachSave, PendingBreach, RedisStore
from tests.route_breaches import NOW, hand_off, kinds
from tests.unit.test_route_domain import CONFIG

pytestmark = pytest.mark.integration

LEASE = 30.0


class SaveFailsOnce(RedisStore):
    """The real store, except that the first save after a breach script raises `failure`."""

    failure: BaseException | None = None

    def _fail(self) -> None:
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure

    async def save_state(self, state: domain.LeadState) -> bool:  # the old code's save after a breach
        self._fail()
        return await super().save_state(state)

    async def save_breach(self, breach: BreachSave) -> PendingBreach | None:
        self._fail()
        return await super().save_breach(breach)


@pytest.fixture
def store(redis: Redis) -> SaveFailsOnce:
    return SaveFailsOnce(redis, f"test:{uuid.uuid4().hex}:")


@pytest.mark.parametrize(
    "failure", [RedisConnectionError("Connection reset"), RuntimeError("boom")], ids=["redis", "other"]
)
async def test_a_reassignment_that_failed_after_the_breach_script_is_published_by_the_retry(
    store: SaveFailsOnce, failure: BaseException
) -> None:
    router = Router(parse_config(CONFIG), store)
    first = await hand_off(router, "lead-1")
    assert first.assignee == Assignee(rep_id="anna", team="dach")
    breached_at = NOW + timedelta(minutes=10)
    store.failure = failure

    assert (await router.on_due(breached_at, LEASE)).records == []  # moved in Redis, then failed

    retried_at = breached_at + timedelta(seconds=LEASE)
    outcome = await router.on_due(retried_at, LEASE)

    assert kinds(outcome.records) == ["breached", "handoff", "reassigned"]
    handoff = outcome.records[1]
    assert isinstance(handoff, Handoff)
    assert handoff.assignee == Assignee(rep_id="jonas", team="dach")
    assert handoff.handoff_id == domain.handoff_id("lead-1", first.handoff_id, 1)
    assert await store.loads() == {"anna": 0, "jonas": 1}  # moved once, not twice
    state = await store.state("lead-1")
    assert state is not None and state.handoff == handoff and state.breach_count == 1
    await router.published([handoff], outcome.breaches)  # the broker acknowledged the records
    # The new clock runs to the new hand-off's deadline, and nothing is left to retry before it.
    deadline = await store.redis.zscore(f"{store.prefix}sla", "lead-1")
    assert deadline == handoff.sla.due_at.timestamp() * 1000
    assert handoff.sla.due_at > retried_at + timedelta(seconds=LEASE)
    assert await store.claim_due(handoff.sla.due_at - timedelta(seconds=1), LEASE) == []
    assert await store.redis.hget(f"{store.prefix}lead:lead-1", "breach_of") is None


async def test_a_kept_breach_that_failed_before_its_state_was_stored_is_published_by_the_retry(
    store: SaveFailsOnce,
) -> None:
    router = Router(parse_config({**CONFIG, "sla": {"reassign_on_breach": False}}), store)
    first = await hand_off(router, "lead-1")
    breached_at = NOW + timedelta(minutes=10)
    store.failure = RedisConnectionError("Connection reset")

    assert (await router.on_due(breached_at, LEASE)).records == []

    outcome = await router.on_due(breached_at + timedelta(seconds=LEASE), LEASE)

    assert kinds(outcome.records) == ["breached"]
    assert outcome.records[0].handoff_id == first.handoff_id
    state = await store.state("lead-1")
    assert state is not None and state.breach_count == 1
    await router.published([], outcome.breaches)  # the broker acknowledged the records
    assert await store.redis.zscore(f"{store.prefix}sla", "lead-1") is None  # kept: the clock stops

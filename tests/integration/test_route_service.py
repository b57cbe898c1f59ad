"""The route worker against the real broker and Redis: hand-off, SLA breach, contact, reject, API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from redis.asyncio import Redis

from schemas.base import utcnow
from schemas.dead_letter import DeadLetter
from schemas.handoff import Handoff, SlaEvent, SlaEventKind
from schemas.stage import StageChange
from schemas.topics import TopicName
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.route.app import RouteService, create_app
from services.route.settings import RouteSettings
from services.route.store import RedisStore
from services.runtime.topics import ensure_pipeline_topics
from tests.eventually import stopped
from tests.kafka import consume_until, produce
from tests.unit.test_route_domain import make_change

pytestmark = pytest.mark.integration

SLA_SECONDS = 3.0
API_KEY = "route-test-key"

RULES: dict[str, Any] = {
    "teams": [
        {
            "name": "emea",
            "lead": "lead-emea@example.com",
            "working_hours": None,
            "reps": [{"id": "anna", "capacity": 5}, {"id": "ben", "capacity": 5}],
        },
        {"name": "na", "working_hours": None, "reps": [{"id": "mia", "capacity": 5}]},
        {"name": "queue", "working_hours": None, "reps": [{"id": "sdr", "capacity": 5}]},
    ],
    "rules": [
        {"name": "na", "team": "na", "match": {"countries": ["US"]}},
        {"name": "emea", "team": "emea", "match": {"countries": ["DE"]}},
    ],
    "account_owners": {"acme.example": "anna"},
    "fallback_team": "queue",
    "sla": {
        "tiers": [{"name": "hot", "minutes": SLA_SECONDS / 60, "temperatures": ["hot"]}],
        "default_tier": "hot",
        "escalation": ["head-of-sales@example.com"],
    },
}


def settings_for(
    broker: EmbeddedBroker, redis_url: str, suffix: str, rules: Path, prefix: str
) -> RouteSettings:
    return RouteSettings(
        broker_url=broker.url,
        redis_url=redis_url,
        topic_suffix=suffix,
        web_port=free_port(),
        broker_session_timeout=6,
        rules_file=rules,
        redis_prefix=prefix,
        sla_check_interval=0.2,
        api_keys=API_KEY,
    )


def write_rules(tmp_path: Path) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(RULES))
    return path


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    return write_rules(tmp_path)


@contextlib.asynccontextmanager
async def running(settings: RouteSettings) -> AsyncIterator[RouteService]:
    """A route worker on `settings`, its topics created, started and stopped around the block."""
    await ensure_pipeline_topics(settings)
    service = create_app(settings)
    await service.app.start()
    try:
        yield service
    finally:
        await stopped(service)
        await service.close()


@pytest.fixture
async def route(
    broker: EmbeddedBroker, redis_url: str, suffix: str, rules_file: Path
) -> AsyncIterator[RouteService]:
    async with running(
        settings_for(broker, redis_url, suffix, rules_file, f"test:{uuid.uuid4().hex}:")
    ) as service:
        yield service


def record(change: StageChange) -> tuple[bytes, bytes]:
    return change.lead_id.encode(), change.model_dump_json().encode()


def activity(lead_id: str, kind: str, reason: str | None = None) -> tuple[bytes, bytes]:
    body = {
        "event_id": uuid.uuid4().hex,
        "occurred_at": utcnow().isoformat(),
        "lead_id": lead_id,
        "record_type": "sales_activity",
        "activity": kind,
        "reason": reason,
    }
    return lead_id.encode(), json.dumps(body).encode()


async def read(
    broker: EmbeddedBroker,
    service: RouteService,
    name: str,
    done: Callable[[list[Any]], bool],
    within: float = 30,
) -> list[Any]:
    model: Any = Handoff if name == TopicName.HANDOFFS else SlaEvent
    parsed: list[Any] = []

    def check(records: list[Any]) -> bool:
        parsed[:] = [model.model_validate_json(r.value) for r in records]
        return done(parsed)

    await consume_until(broker.bootstrap_servers, service.settings.topic(name), check, within=within)
    return parsed


def kinds(events: list[SlaEvent], lead: str) -> list[SlaEventKind]:
    return [e.kind for e in events if e.lead_id == lead]


async def test_handoff_breach_reassignment_contact_and_reject(
    route: RouteService, broker: EmbeddedBroker
) -> None:
    owned = make_change("lead-owned", email="jane@acme.example", occurred_at=utcnow())
    us = make_change("lead-us", country="US", email="sam@us.example", occurred_at=utcnow())
    cold = make_change("lead-cold", sales_ready=False, temperature="warm")
    other = make_change("lead-reject", email="joe@other.example", occurred_at=utcnow())
    stage_topic = route.settings.topic(TopicName.STAGE_CHANGES)
    await produce(broker.bootstrap_servers, stage_topic, [record(c) for c in (owned, owned, us, cold, other)])

    first = await read(
        broker,
        route,
        TopicName.HANDOFFS,
        lambda hs: {h.lead_id for h in hs} >= {"lead-owned", "lead-us", "lead-reject"},
    )
    # Contact in time for lead-us, a rejection for lead-reject; lead-owned is left alone.
    await produce(
        broker.bootstrap_servers,
        route.settings.topic(TopicName.SALES_ACTIVITY),
        [activity("lead-us", "contacted"), activity("lead-reject", "rejected", "not a fit")],
    )
    by_lead = {h.lead_id: h for h in first}
    handoff = by_lead["lead-owned"]
    assert handoff.assignee.rep_id == "anna" and handoff.assignee.team == "emea"  # the account owner
    assert handoff.sla.tier == "hot"
    assert handoff.sla.due_at == handoff.handed_off_at + timedelta(seconds=SLA_SECONDS)
    assert handoff.contact.email == "jane@acme.example" and handoff.trigger.type == "demo_request"
    assert by_lead["lead-us"].assignee.rep_id == "mia"

    events = await read(
        broker, route, TopicName.SLA, lambda es: SlaEventKind.REASSIGNED in kinds(es, "lead-owned")
    )
    breach = next(e for e in events if e.lead_id == "lead-owned" and e.kind == SlaEventKind.BREACHED)
    assert breach.assignee.rep_id == "anna" and breach.breach_count == 1
    assert breach.notify == ["lead-emea@example.com"]
    moved = next(e for e in events if e.lead_id == "lead-owned" and e.kind == SlaEventKind.REASSIGNED)
    assert moved.assignee.rep_id == "ben"

    # Replaying the original stage change now must not hand the lead off again.
    await produce(broker.bootstrap_servers, stage_topic, [record(owned)])
    # ben misses the deadline too: the second breach escalates and moves the lead to the fallback queue.
    events = await read(
        broker, route, TopicName.SLA, lambda es: SlaEventKind.ESCALATED in kinds(es, "lead-owned")
    )
    escalated = next(e for e in events if e.lead_id == "lead-owned" and e.kind == SlaEventKind.ESCALATED)
    assert escalated.escalation_level == 1 and escalated.breach_count == 2
    assert escalated.notify == ["lead-emea@example.com", "head-of-sales@example.com"]
    handoffs = await read(broker, route, TopicName.HANDOFFS, lambda hs: False, within=1.5)
    owned_handoffs = [h for h in handoffs if h.lead_id == "lead-owned"]
    assert [h.assignee.rep_id for h in owned_handoffs] == ["anna", "ben", "sdr"]
    assert len({h.handoff_id for h in owned_handoffs}) == 3  # the replay made none
    assert owned_handoffs[1].sla.due_at > handoff.sla.due_at
    assert Counter(h.lead_id for h in handoffs if h.lead_id != "lead-owned") == {
        "lead-us": 1,
        "lead-reject": 1,
    }

    events = await read(broker, route, TopicName.SLA, lambda es: False, within=1.5)
    assert kinds(events, "lead-us") == [SlaEventKind.STARTED, SlaEventKind.MET]
    assert kinds(events, "lead-reject") == [SlaEventKind.STARTED, SlaEventKind.CANCELLED]
    assert next(e for e in events if e.kind == SlaEventKind.CANCELLED).reason == "rejected: not a fit"
    assert kinds(events, "lead-cold") == []
    loads = await route.store.loads()
    # anna and ben were released by the reassignments (sdr may have breached too by now).
    assert loads["mia"] == 1 and loads["anna"] == 0 and loads["ben"] == 0 and loads.get("sdr", 0) <= 1

    url = f"http://127.0.0.1:{route.settings.web_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    assert 'leadpipe_route_handoffs_total{team="emea",tier="hot"}' in text
    assert 'leadpipe_route_sla_breaches_total{team="emea",tier="hot"}' in text
    assert "leadpipe_route_first_contact_seconds_count" in text


async def test_rep_api_and_status_updates_steer_assignment(
    route: RouteService, broker: EmbeddedBroker
) -> None:
    base = f"http://127.0.0.1:{route.settings.web_port}"
    async with aiohttp.ClientSession(headers={"X-API-Key": API_KEY}) as session:
        async with session.put(f"{base}/reps/anna", json={"available": False}) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
        assert body["available_now"] is False and body["unavailable_because"] == "unavailable"
        away = (utcnow() + timedelta(days=2)).isoformat()
        async with session.put(f"{base}/reps/ben", json={"out_of_office_until": away}) as response:
            assert (await response.json())["unavailable_because"] == "out_of_office"
        async with session.put(f"{base}/reps/ben", json={"capacity": 4}) as response:
            assert (await response.json())["out_of_office_until"] is not None  # omitted: kept
        async with session.put(f"{base}/reps/ben", json={"out_of_office_until": None}) as response:
            back = await response.json()
        assert back["available_now"] is True and back["out_of_office_until"] is None  # back early
        assert back["capacity"] == 4
        async with session.put(f"{base}/reps/anna", json={"capacity": -1}) as response:
            assert response.status == 422
        async with session.get(f"{base}/reps/nobody") as response:
            assert response.status == 404
        status = {
            "record_type": "rep_status",
            "event_id": "rs-1",
            "occurred_at": utcnow().isoformat(),
            "rep_id": "ben",
            "capacity": 1,
        }
        # A capacity of 400 digits failed route's status script for ever, and every status and
        # activity behind it waited: now the contract refuses it, and the next one applies.
        poison = {**status, "event_id": "rs-0", "capacity": 10**400}
        await produce(
            broker.bootstrap_servers,
            route.settings.topic(TopicName.SALES_ACTIVITY),
            [(b"ben", json.dumps(poison).encode()), (b"ben", json.dumps(status).encode())],
        )
        for _ in range(100):
            async with session.get(f"{base}/reps/ben") as response:
                ben = await response.json()
            if ben["capacity"] == 1:
                break
            await asyncio.sleep(0.1)
        assert ben["capacity"] == 1
        dead = await consume_until(
            broker.bootstrap_servers, route.settings.topic(TopicName.DLQ), lambda rs: len(rs) >= 1, within=10
        )
        letter = DeadLetter.model_validate_json(dead[0].value)
        assert letter.reason == "validation_failed" and "capacity" in letter.detail
        # anna is away and ben takes one lead: the second DE lead overflows to the fallback queue.
        changes = [
            make_change(f"lead-{n}", email=f"x{n}@other.example", occurred_at=utcnow()) for n in range(2)
        ]
        await produce(
            broker.bootstrap_servers,
            route.settings.topic(TopicName.STAGE_CHANGES),
            [record(c) for c in changes],
        )
        handoffs = await read(broker, route, TopicName.HANDOFFS, lambda hs: len(hs) >= 2)
        assert sorted(h.assignee.rep_id or "" for h in handoffs) == ["ben", "sdr"]
        async with session.get(f"{base}/reps") as response:
            reps = {r["rep_id"]: r for r in (await response.json())["reps"]}
        assert reps["ben"]["open_leads"] == 1 and reps["anna"]["open_leads"] == 0


async def test_a_backlog_with_every_change_twice_hands_each_lead_off_once(
    broker: EmbeddedBroker, redis_url: str, suffix: str, tmp_path: Path
) -> None:
    """Written before the worker starts, both copies of a change fall into one batch, where the
    first copy's hand-off is not marked published yet: the batch itself must drop the second."""
    rules = tmp_path / "slow-sla.yaml"
    rules.write_text(
        yaml.safe_dump({**RULES, "sla": {**RULES["sla"], "tiers": [{"name": "hot", "minutes": 60}]}})
    )
    prefix = f"test:{uuid.uuid4().hex}:"
    settings = settings_for(broker, redis_url, suffix, rules, prefix)
    await ensure_pipeline_topics(settings)
    changes = [
        make_change(f"twice-{n}", email=f"t{n}@other.example", occurred_at=utcnow()) for n in range(12)
    ]
    await produce(
        broker.bootstrap_servers, settings.topic(TopicName.STAGE_CHANGES), [record(c) for c in changes * 2]
    )
    async with running(settings) as service:
        await read(broker, service, TopicName.HANDOFFS, lambda hs: len({h.lead_id for h in hs}) >= 12)
        await asyncio.sleep(1.0)
        handoffs: list[Handoff] = await read(
            broker, service, TopicName.HANDOFFS, lambda hs: False, within=1.0
        )
    assert sorted(h.lead_id for h in handoffs) == sorted(c.lead_id for c in changes)  # exactly one each
    assert await RedisStoreProbe(redis_url, prefix).published([c.lead_id for c in changes]) == 12


def handled(service: RouteService) -> float:
    """Stage changes this worker consumed (from its own metrics registry)."""
    value = service.metrics.registry.get_sample_value(
        "leadpipe_events_in_total",
        {"service": "route", "topic": service.settings.topic(TopicName.STAGE_CHANGES)},
    )
    return value or 0.0


async def test_two_workers_never_double_assign_a_burst(
    broker: EmbeddedBroker, redis_url: str, suffix: str, tmp_path: Path
) -> None:
    rules = tmp_path / "slow-sla.yaml"
    rules.write_text(
        yaml.safe_dump({**RULES, "sla": {**RULES["sla"], "tiers": [{"name": "hot", "minutes": 60}]}})
    )
    prefix = f"test:{uuid.uuid4().hex}:"
    services = [create_app(settings_for(broker, redis_url, suffix, rules, prefix)) for _ in range(2)]
    await ensure_pipeline_topics(services[0].settings)
    try:
        for service in services:
            await service.app.start()
        for _ in range(150):
            if all(s.consuming() for s in services) and len(services[0].app.consumer.assignment()) < 8:
                break
            await asyncio.sleep(0.1)
        burst = [
            make_change(f"burst-{n}", email=f"x{n}@other.example", occurred_at=utcnow()) for n in range(40)
        ]
        # Every lead twice, as a producer retry or a redelivery after a rebalance would bring it.
        await produce(
            broker.bootstrap_servers,
            services[0].settings.topic(TopicName.STAGE_CHANGES),
            [record(c) for c in burst + burst],
        )
        await read(broker, services[0], TopicName.HANDOFFS, lambda hs: len({h.lead_id for h in hs}) >= 40)
        await asyncio.sleep(1.0)
        handoffs: list[Handoff] = await read(
            broker, services[0], TopicName.HANDOFFS, lambda hs: False, within=1.0
        )
    finally:
        for service in services:
            await stopped(service)
            await service.close()
    assert sorted(h.lead_id for h in handoffs) == sorted(c.lead_id for c in burst)  # exactly one each
    per_rep = Counter(h.assignee.rep_id for h in handoffs if h.assignee.rep_id)
    loads = await RedisStoreProbe(redis_url, prefix).loads()
    assert {rep: n for rep, n in loads.items() if n} == dict(per_rep)
    assert all(n <= 5 for n in per_rep.values())
    assert sum(per_rep.values()) == 15  # anna + ben (emea) full, then the fallback queue's sdr
    assert [handled(s) > 0 for s in services] == [True, True], "both workers took part"
    # marked published once each batch was acknowledged: a later replay publishes nothing again
    assert await RedisStoreProbe(redis_url, prefix).published([h.lead_id for h in handoffs]) == 40


class RedisStoreProbe:
    """Reads the shared store after the workers stopped."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.redis_url = redis_url
        self.prefix = prefix

    async def loads(self) -> dict[str, int]:
        client = Redis.from_url(self.redis_url)
        try:
            return await RedisStore(client, self.prefix).loads()
        finally:
            await client.aclose()

    async def published(self, lead_ids: list[str]) -> int:
        """How many of these leads' open hand-offs are marked as on the broker."""
        client = Redis.from_url(self.redis_url)
        try:
            flags = [await client.hget(f"{self.prefix}lead:{lead}", "published") for lead in lead_ids]
        finally:
            await client.aclose()
        return sum(flag == b"1" for flag in flags)

"""Enrich's privacy duties against the real broker and Redis: erasure with its cascade to merged
anonymous leads, export answers, and the retention sweep that requests erasure of quiet leads."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from schemas import InteractionIn, PrivacyRecord, PrivacyRequestKind, TopicName
from schemas.base import utcnow
from services.capture.domain import lead_identity, to_interaction
from services.devstack.broker import EmbeddedBroker
from services.privacy import exports
from services.runtime.codec import encode
from services.runtime.stream_app import StreamService
from tests.enrich_worker import start_enrich
from tests.eventually import eventually
from tests.kafka import consume_until, produce

pytestmark = pytest.mark.integration


def interaction(**fields: Any) -> tuple[bytes, bytes]:
    record = to_interaction(InteractionIn.model_validate(fields), received_at=utcnow())
    return record.lead_id.encode(), encode(record)


async def privacy_records(
    broker: EmbeddedBroker, service: StreamService, done: Callable[[list[PrivacyRecord]], bool]
) -> list[PrivacyRecord]:
    def decoded(records: list[Any]) -> list[PrivacyRecord]:
        return [PrivacyRecord.model_validate_json(r.value) for r in records if r.value]

    topic = service.settings.topic(TopicName.PRIVACY)
    found = await consume_until(broker.bootstrap_servers, topic, lambda rs: done(decoded(rs)), within=60)
    result = decoded(found)
    assert done(result), [(r.kind.value, r.lead_id, r.requested_by, r.service) for r in result]
    return result


def rows(service: StreamService, lead_id: str) -> dict[str, Any]:
    """The lead's rows in every enrich table (by key), as this worker holds them."""
    return {
        name: table.get(lead_id)
        for name, table in service.app.tables.items()
        if table.get(lead_id) is not None
    }


async def test_erasure_cascades_to_merged_anonymous_leads_and_export_answers(
    broker: EmbeddedBroker, redis_url: str, suffix: str, enrich: StreamService
) -> None:
    email, anon = "cascade.person@example.org", "anon-cascade-1"
    known, _ = lead_identity(email, None)
    anonymous, _ = lead_identity(None, anon)
    now = datetime.now(UTC)
    source = enrich.settings.topic(TopicName.INTERACTIONS)
    view = interaction(event_id="pv-1", type="page_view", occurred_at=now, anonymous_id=anon)
    await produce(broker.bootstrap_servers, source, [view])
    await eventually(lambda: bool(rows(enrich, anonymous)))
    form = interaction(
        event_id="form-1",
        type="form_submit",
        occurred_at=now + timedelta(seconds=1),
        anonymous_id=anon,
        contact={"email": email, "first_name": "Cass", "phone": "+49 30 1234567"},
    )
    await produce(broker.bootstrap_servers, source, [form])
    leads: Any = enrich.app.tables["enrich-leads"]
    await eventually(lambda: anonymous in (leads.get(known) or b"").decode())
    assert set(rows(enrich, known)) >= {"enrich-leads", "enrich-activity"}

    redis = Redis.from_url(redis_url)
    try:
        export = PrivacyRecord(
            event_id=f"export-{suffix}",
            occurred_at=utcnow(),
            lead_id=known,
            kind=PrivacyRequestKind.EXPORT,
            answer_by=utcnow() + timedelta(seconds=60),
        )
        topic = enrich.settings.topic(TopicName.PRIVACY)
        await produce(broker.bootstrap_servers, topic, [(known.encode(), encode(export))])

        async def answered() -> bool:
            return "enrich" in await exports.answers(redis, suffix, export.event_id)

        await eventually(answered)
        answer = (await exports.answers(redis, suffix, export.event_id))["enrich"]
        assert answer["lead"]["profile"]["email"] == email
        assert answer["lead"]["merged"] == [anonymous]
        assert answer["last_activity"] is not None
    finally:
        await redis.aclose()

    erase = PrivacyRecord(
        event_id=f"erase-{suffix}",
        occurred_at=utcnow(),
        lead_id=known,
        kind=PrivacyRequestKind.ERASE,
        requested_by="admin",
    )
    await produce(broker.bootstrap_servers, topic, [(known.encode(), encode(erase))])

    def completed(records: list[PrivacyRecord]) -> bool:
        done = {r.lead_id for r in records if r.kind is PrivacyRequestKind.ERASURE_COMPLETED}
        return done >= {known, anonymous}

    records = await privacy_records(broker, enrich, completed)
    by_lead = {r.lead_id: r for r in records if r.kind is PrivacyRequestKind.ERASURE_COMPLETED}
    assert by_lead[known].erased == {
        "leads_table": 1,
        "pending_table": 0,
        "activity_table": 1,
        "merged_leads": 1,
    }
    assert by_lead[known].in_reply_to == erase.event_id and by_lead[known].service == "enrich"
    assert by_lead[anonymous].erased["leads_table"] == 1
    cascade = next(r for r in records if r.kind is PrivacyRequestKind.ERASE and r.lead_id == anonymous)
    assert cascade.requested_by == "cascade"
    assert rows(enrich, known) == {} and rows(enrich, anonymous) == {}
    for table in enrich.app.tables.values():
        for key, value in table.items():
            text = f"{key!r}{value!r}"
            assert known not in text and anonymous not in text and email not in text and anon not in text

    await in_flight_records_cannot_bring_the_lead_back(broker, enrich, erase, email)


async def in_flight_records_cannot_bring_the_lead_back(
    broker: EmbeddedBroker, enrich: StreamService, erase: PrivacyRecord, email: str
) -> None:
    """An interaction in flight during the erasure is dropped; a later one (the person is back) is not."""
    source = enrich.settings.topic(TopicName.INTERACTIONS)
    known, _ = lead_identity(email, None)
    leads: Any = enrich.app.tables["enrich-leads"]
    stale = interaction(
        event_id="in-flight",
        type="page_view",
        occurred_at=erase.occurred_at - timedelta(seconds=1),
        contact={"email": email, "first_name": "Stale"},
    )
    returned = interaction(event_id="back", type="page_view", occurred_at=utcnow(), contact={"email": email})
    await produce(broker.bootstrap_servers, source, [stale, returned])
    await eventually(lambda: bool(rows(enrich, known)))
    profile = leads.get(known).decode()
    assert "Stale" not in profile and "in-flight" not in profile
    dropped = enrich.metrics.registry.get_sample_value(
        "leadpipe_privacy_stale_records_dropped_total", {"service": "enrich"}
    )
    assert dropped == 1


async def test_leads_quiet_beyond_the_retention_period_are_erased(
    broker: EmbeddedBroker,
    redis_url: str,
    suffix: str,
    tmp_path: Path,
    started: list[StreamService],
) -> None:
    enrich = await start_enrich(broker, redis_url, suffix, tmp_path, "2")  # two quiet seconds
    started.append(enrich)
    email = "quiet.person@example.org"
    lead, _ = lead_identity(email, None)
    source = enrich.settings.topic(TopicName.INTERACTIONS)
    event = interaction(
        event_id="q-1", type="form_submit", occurred_at=datetime.now(UTC), contact={"email": email}
    )
    await produce(broker.bootstrap_servers, source, [event])

    def erased(records: list[PrivacyRecord]) -> bool:
        return any(r.kind is PrivacyRequestKind.ERASURE_COMPLETED and r.lead_id == lead for r in records)

    records = await privacy_records(broker, enrich, erased)
    requests = [r for r in records if r.kind is PrivacyRequestKind.ERASE]
    assert [(r.lead_id, r.requested_by) for r in requests] == [(lead, "retention")]
    done = next(r for r in records if r.kind is PrivacyRequestKind.ERASURE_COMPLETED)
    assert done.in_reply_to == requests[0].event_id
    assert done.erased["leads_table"] == 1 and done.erased["activity_table"] == 1
    assert rows(enrich, lead) == {}


async def test_one_sweep_requests_erasure_of_every_lead_past_retention(
    *,
    broker: EmbeddedBroker,
    redis_url: str,
    suffix: str,
    tmp_path: Path,
    started: list[StreamService],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sweep took its first 1,000 quiet leads only, and the next came an hour later: an import of
    1M leads that all fell quiet on one day stayed six weeks past its retention. The leads here were
    all active at one moment, so they fall quiet together: every one must go in the same sweep."""
    caplog.set_level(logging.INFO, logger="services.enrich.agents")
    enrich = await start_enrich(broker, redis_url, suffix, tmp_path, "5")  # quiet after five seconds
    started.append(enrich)
    count = 2500
    now = datetime.now(UTC)
    events = [
        interaction(event_id=f"bulk-{i}", type="page_view", occurred_at=now, anonymous_id=f"anon-bulk-{i}")
        for i in range(count)
    ]
    await produce(broker.bootstrap_servers, enrich.settings.topic(TopicName.INTERACTIONS), events)

    def sweeps() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("retention sweep:")]

    await eventually(sweeps, within=60)
    assert datetime.now(UTC) < now + timedelta(seconds=30), "too slow to tell one sweep from several"
    assert (
        sweeps()[0] == f"retention sweep: erasure requested for {count} leads quiet past the retention period"
    )
    requests = await privacy_records(
        broker, enrich, lambda rs: len({r.lead_id for r in rs if r.kind is PrivacyRequestKind.ERASE}) >= count
    )
    assert {r.requested_by for r in requests if r.kind is PrivacyRequestKind.ERASE} == {"retention"}


async def test_a_person_s_erasure_of_an_anonymous_lead_erases_the_known_lead_it_became(
    broker: EmbeddedBroker, suffix: str, enrich: StreamService
) -> None:
    """LinkedIn's DELETED names the form response's anonymous lead, whose answers were merged into
    the e-mail lead: that one goes too. The retention sweep's erasure of a quiet anonymous lead
    leaves the active person it became alone."""
    source, topic = (enrich.settings.topic(name) for name in (TopicName.INTERACTIONS, TopicName.PRIVACY))
    leads: Any = enrich.app.tables["enrich-leads"]
    people = {
        "linkedin": ("deleted@example.org", "linkedin:urn-1"),
        "retention": ("kept@example.org", "anon-2"),
    }
    ids = {
        by: (lead_identity(email, None)[0], lead_identity(None, anon)[0])
        for by, (email, anon) in people.items()
    }
    now = datetime.now(UTC)
    for n, (email, anon) in enumerate(people.values()):
        lead = interaction(event_id=f"ad-{n}", type="ad_lead", occurred_at=now, anonymous_id=anon)
        contact = interaction(
            event_id=f"contact-{n}",
            type="identify",
            occurred_at=now + timedelta(seconds=1),
            anonymous_id=anon,
            contact={"email": email, "first_name": "Lin"},
        )
        await produce(broker.bootstrap_servers, source, [lead, contact])
    for known, anonymous in ids.values():
        await eventually(lambda k=known, a=anonymous: a in (leads.get(k) or b"").decode())

    requests = [
        PrivacyRecord(
            event_id=f"erase-{by}-{suffix}",
            occurred_at=utcnow(),
            lead_id=anonymous,
            kind=PrivacyRequestKind.ERASE,
            requested_by=by,
        )
        for by, (_, anonymous) in ids.items()
    ]
    await produce(broker.bootstrap_servers, topic, [(r.lead_id.encode(), encode(r)) for r in requests])

    deleted, kept = ids["linkedin"], ids["retention"]

    def completed(records: list[PrivacyRecord]) -> bool:
        done = {r.lead_id for r in records if r.kind is PrivacyRequestKind.ERASURE_COMPLETED}
        return done >= {*deleted, kept[1]}

    records = await privacy_records(broker, enrich, completed)
    answers = {r.in_reply_to: r for r in records if r.kind is PrivacyRequestKind.ERASURE_COMPLETED}
    assert answers[requests[0].event_id].erased["known_lead"] == 1
    assert "known_lead" not in answers[requests[1].event_id].erased
    cascade = next(r for r in records if r.kind is PrivacyRequestKind.ERASE and r.lead_id == deleted[0])
    assert (cascade.requested_by, cascade.reason) == (
        "cascade",
        "an erased anonymous lead was merged into it",
    )
    assert rows(enrich, deleted[0]) == {} and rows(enrich, deleted[1]) == {}
    assert "kept@example.org" in leads.get(kept[0]).decode()
    assert kept[0] not in {r.lead_id for r in records if r.kind is PrivacyRequestKind.ERASE}

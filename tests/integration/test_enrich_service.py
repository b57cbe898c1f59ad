"""Enrich against the real broker and Redis: identity merge across partitions, and a provider outage."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiokafka import ConsumerRecord
from redis.asyncio import Redis

from bench.provider import serving
from schemas.dead_letter import DeadLetter
from schemas.enriched import EnrichedInteraction, EnrichmentStatus
from schemas.interaction import InteractionIn
from schemas.topics import TopicName
from services.capture.domain import lead_identity, to_interaction
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.enrich.agents import INBOX
from services.enrich.app import create_app
from services.enrich.firmographics import DEFAULT_COMPANIES
from services.enrich.settings import EnrichSettings
from services.runtime.codec import encode
from services.runtime.stream_app import StreamService
from services.runtime.topics import ensure_pipeline_topics, ensure_topics
from tests.eventually import stopped
from tests.kafka import consume_until, produce

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
Records = list[ConsumerRecord[bytes, bytes]]


def a_company() -> dict[str, str]:
    with DEFAULT_COMPANIES.open(encoding="utf-8") as handle:
        return next(row for row in csv.DictReader(handle) if row["domain"].endswith(".de"))


def event(**fields: Any) -> bytes:
    interaction = to_interaction(InteractionIn.model_validate(fields), received_at=T0)
    return encode(interaction)


def enriched(records: Records) -> list[EnrichedInteraction]:
    return [EnrichedInteraction.model_validate_json(r.value) for r in records]


async def started(settings: EnrichSettings) -> StreamService:
    await ensure_pipeline_topics(settings)
    await ensure_topics(settings.bootstrap_servers, [settings.topic(INBOX)], settings.topic_partitions)
    service = create_app(settings)
    await service.app.start()
    return service


async def until(broker: EmbeddedBroker, topic: str, done: Callable[[Records], bool]) -> Records:
    records = await consume_until(broker.bootstrap_servers, topic, done, within=40)
    assert done(records), [(r.key, r.value[:300]) for r in records]
    return records


@pytest.fixture
async def enrich(broker: EmbeddedBroker, redis_url: str, suffix: str) -> AsyncIterator[StreamService]:
    settings = EnrichSettings(
        broker_url=broker.url, redis_url=redis_url, topic_suffix=suffix, web_port=free_port()
    )
    service = await started(settings)
    try:
        yield service
    finally:
        await stopped(service)


async def test_anonymous_history_merges_into_the_known_lead(
    enrich: StreamService, broker: EmbeddedBroker, redis_url: str, suffix: str
) -> None:
    company = a_company()
    anon = "anon-7f3a9c"
    anon_lead, _ = lead_identity(None, anon)
    known_lead, _ = lead_identity(f"jane.doe@{company['domain']}", None)
    source = enrich.settings.topic(TopicName.INTERACTIONS)
    sink = enrich.settings.topic(TopicName.ENRICHED)
    views = [
        event(
            event_id=f"pv-{i}",
            type="page_view",
            occurred_at=T0 + timedelta(minutes=i),
            anonymous_id=anon,
            properties={"url": f"/page/{i}"},
        )
        for i in range(3)
    ]
    await produce(broker.bootstrap_servers, source, [(anon_lead.encode(), v) for v in views])
    await until(broker, sink, lambda rs: len(rs) >= 3)

    form = event(
        event_id="form-1",
        type="form_submit",
        occurred_at=T0 + timedelta(minutes=5),
        anonymous_id=anon,
        contact={
            "email": f"  Jane.Doe@{company['domain'].upper()} ",
            "first_name": "JANE",
            "job_title": "VP Marketing",
            "phone": "030 1234567",
            "country": "Deutschland",
        },
    )
    later_view = event(
        event_id="pv-late", type="page_view", occurred_at=T0 + timedelta(minutes=9), anonymous_id=anon
    )
    duplicate = views[0]
    await produce(broker.bootstrap_servers, source, [(known_lead.encode(), form)])

    def known(rs: Records) -> list[EnrichedInteraction]:
        return [r for r in enriched(rs) if r.lead_id == known_lead]

    records = await until(
        broker, sink, lambda rs: {r.event_id for r in known(rs)} >= {"form-1", "pv-0", "pv-1", "pv-2"}
    )
    await produce(
        broker.bootstrap_servers, source, [(anon_lead.encode(), later_view), (anon_lead.encode(), duplicate)]
    )
    records = await until(broker, sink, lambda rs: "pv-late" in {r.event_id for r in known(rs)})
    await asyncio.sleep(1)
    records = await consume_until(broker.bootstrap_servers, sink, lambda rs: False, within=1)

    for record in records:
        assert record.key == EnrichedInteraction.model_validate_json(record.value).lead_id.encode()
    mine = known(records)
    by_id = {r.event_id: r for r in mine}
    assert sorted(r.event_id for r in mine) == sorted(["form-1", "pv-0", "pv-1", "pv-2", "pv-late"])
    assert [r.event_id for r in enriched(records) if r.lead_id == anon_lead] == ["pv-0", "pv-1", "pv-2"]
    replays = [by_id[f"pv-{i}"] for i in range(3)]
    assert all(r.replay_of == anon_lead for r in replays)
    assert [r.merged_from for r in mine if r.merged_from] == [[anon_lead]]
    assert by_id["form-1"].replay_of is None and by_id["pv-late"].replay_of is None

    profile = by_id["pv-late"].profile
    assert profile.lead_id == known_lead
    assert profile.email == f"jane.doe@{company['domain']}"
    assert profile.first_name == "Jane"
    assert profile.phone == "+49301234567"
    assert profile.country == "DE"
    assert profile.seniority == "vp" and profile.department == "marketing"
    assert profile.anonymous_ids == [anon]
    assert profile.firmographics.company_name == company["company_name"]
    assert profile.firmographics.employee_range == company["employee_range"]
    assert profile.firmographics.industry == company["industry"]
    assert by_id["pv-late"].enrichment is EnrichmentStatus.COMPLETE
    assert profile.field_sources["email"].event_id == "form-1"
    redis = Redis.from_url(redis_url)  # the company file answered from memory: no Redis cache before it
    try:
        assert await redis.keys(f"leadpipe:enrich{suffix}:firmographics:*") == []
    finally:
        await redis.aclose()


class FlakyProvider:
    """An HTTP firmographics provider that hangs until told to answer."""

    def __init__(self) -> None:
        self.healthy = False
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if not self.healthy:
            await asyncio.sleep(30)
        domain = request.match_info["domain"]
        return web.json_response(
            {
                "company_name": "Slowpoke AG",
                "industry": "Software",
                "employee_range": "51-200",
                "country": "DE",
                "domain": domain,
            }
        )


def remote(broker: EmbeddedBroker, redis_url: str, suffix: str, port: int, **settings: Any) -> EnrichSettings:
    """Enrich with the HTTP provider on `port` (and its Redis cache)."""
    return EnrichSettings(
        broker_url=broker.url,
        redis_url=redis_url,
        topic_suffix=suffix,
        web_port=free_port(),
        provider="http",
        provider_url=f"http://127.0.0.1:{port}/companies/{{domain}}",
        **settings,
    )


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[FlakyProvider, int]]:
    provider = FlakyProvider()
    async with serving(provider.handle) as port:
        yield provider, port


async def test_slow_provider_passes_events_partial_then_completes_them(
    broker: EmbeddedBroker, redis_url: str, suffix: str, flaky: tuple[FlakyProvider, int]
) -> None:
    provider, port = flaky
    settings = remote(
        broker,
        redis_url,
        suffix,
        port,
        provider_timeout=0.3,
        lookup_budget=0.8,
        breaker_failures=2,
        breaker_reset_seconds=1.0,
        retry_interval_seconds=0.5,
    )
    service = await started(settings)
    try:
        source = settings.topic(TopicName.INTERACTIONS)
        sink = settings.topic(TopicName.ENRICHED)
        people = [f"p{i}@slowpoke{suffix.replace('.', '')}.example" for i in range(4)]
        records = [
            event(event_id=f"ev-{i}", type="demo_request", occurred_at=T0, contact={"email": email})
            for i, email in enumerate(people)
        ]
        keys = [lead_identity(email, None)[0].encode() for email in people]
        await produce(broker.bootstrap_servers, source, list(zip(keys, records, strict=True)))
        out = await until(broker, sink, lambda rs: len(rs) >= 4)
        first = enriched(out)
        assert sorted(r.event_id for r in first) == [f"ev-{i}" for i in range(4)]
        assert all(r.enrichment is EnrichmentStatus.PARTIAL for r in first)
        assert all(r.profile.firmographics.company_name is None for r in first)
        assert provider.calls < 4  # the circuit opened: later events did not wait for the provider

        provider.healthy = True
        out = await until(broker, sink, lambda rs: len([r for r in enriched(rs) if r.completes]) >= 4)
        completions = [r for r in enriched(out) if r.completes]
        assert sorted(c for r in completions for c in r.completes) == [f"ev-{i}" for i in range(4)]
        for record in completions:
            assert record.enrichment is EnrichmentStatus.COMPLETE
            assert record.profile.firmographics.company_name == "Slowpoke AG"
            assert record.event_id not in {f"ev-{i}" for i in range(4)}
        redis = Redis.from_url(redis_url)
        try:
            domain = people[0].split("@")[1]
            assert await redis.get(f"leadpipe:enrich{suffix}:firmographics:{domain}") is not None
        finally:
            await redis.aclose()
    finally:
        await stopped(service)


class CountingProvider:
    """An HTTP firmographics provider that answers after `delay` seconds and counts the requests it
    holds at once."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.in_flight = 0
        self.most_in_flight = 0
        self.domains: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        domain = request.match_info["domain"]
        self.domains.append(domain)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        name = domain.split(".")[0].title()
        return web.json_response({"company_name": f"{name} GmbH", "industry": "Software", "domain": domain})


async def test_a_batchs_lookups_go_to_a_remote_provider_together(
    broker: EmbeddedBroker, redis_url: str, suffix: str
) -> None:
    """A batch looks its domains up side by side before its records are handled, where each record
    once waited for its own lookup (and let the producer send the batch's records so far); a record
    decoded ahead that cannot be read is dead-lettered once."""
    provider = CountingProvider(delay=0.3)
    tag = suffix.replace(".", "")
    people = [f"jo@firm{i}{tag}.example" for i in range(8)]
    records = [
        event(event_id=f"form-{i}", type="form_submit", occurred_at=T0, contact={"email": email})
        for i, email in enumerate(people)
    ]
    keys = [lead_identity(email, None)[0].encode() for email in people]
    unreadable = (keys[0], b"{not json")
    async with serving(provider.handle) as port:
        settings = remote(broker, redis_url, suffix, port, provider_timeout=2.0, lookup_budget=3.0)
        source, sink = settings.topic(TopicName.INTERACTIONS), settings.topic(TopicName.ENRICHED)
        dlq = settings.topic(TopicName.DLQ)
        service = await started(settings)
        try:
            await produce(broker.bootstrap_servers, source, [*zip(keys, records, strict=True), unreadable])
            out = enriched(await until(broker, sink, lambda rs: len(rs) >= len(people)))
            await until(broker, dlq, lambda rs: len(rs) >= 1)
            await asyncio.sleep(1)  # a second dead letter would have arrived by now
            letters = await consume_until(broker.bootstrap_servers, dlq, lambda rs: False, within=1)
        finally:
            await stopped(service)

    assert sorted(r.event_id for r in out) == sorted(f"form-{i}" for i in range(8))
    for record in out:  # each record got its own company's answer
        assert record.enrichment is EnrichmentStatus.COMPLETE
        firm = record.profile.email.split("@")[1]  # type: ignore[union-attr]
        assert record.profile.firmographics.company_name == f"{firm.split('.')[0].title()} GmbH"
    assert sorted(provider.domains) == sorted(email.split("@")[1] for email in people)  # once each
    assert provider.most_in_flight >= 2
    assert len(letters) == 1


async def test_an_event_whose_enriched_record_the_producer_cannot_send_is_dead_lettered_and_enrich_goes_on(
    enrich: StreamService, broker: EmbeddedBroker
) -> None:
    """An interaction under the broker's 1 MiB grows past it with its profile: the producer refused
    the enriched record, the agent crashed on it, and on the same record after every restart."""
    settings = enrich.settings
    huge = event(
        event_id="huge",
        type="page_view",
        occurred_at=T0,
        anonymous_id="anon-huge",
        properties={"dom": "x" * 1_030_000},
    )
    after = event(event_id="after", type="form_submit", occurred_at=T0, contact={"email": "bo@example.org"})
    await produce(
        broker.bootstrap_servers,
        settings.topic(TopicName.INTERACTIONS),
        [
            (lead_identity(None, "anon-huge")[0].encode(), huge),
            (lead_identity("bo@example.org", None)[0].encode(), after),
        ],
    )
    out = enriched(await until(broker, settings.topic(TopicName.ENRICHED), lambda rs: len(rs) >= 1))
    assert [record.event_id for record in out] == ["after"]
    dead = await until(broker, settings.topic(TopicName.DLQ), lambda rs: len(rs) >= 1)
    letter = DeadLetter.model_validate_json(dead[0].value)
    assert letter.reason == "record_too_large" and letter.service == "enrich"
    assert (
        settings.topic(TopicName.ENRICHED) in letter.detail
        and "exceeds the producer's limit" in letter.detail
    )
    assert letter.origin.topic == settings.topic(TopicName.INTERACTIONS)


async def test_an_identifying_event_too_large_to_enrich_still_merges_the_visitors_history(
    enrich: StreamService, broker: EmbeddedBroker
) -> None:
    """The alias request went out after the enriched record: when that record was too large to send,
    the request was never sent, while the lead's state said it had been asked, so the visitor's
    history never reached the known lead."""
    settings = enrich.settings
    source, sink = settings.topic(TopicName.INTERACTIONS), settings.topic(TopicName.ENRICHED)
    anon_lead, _ = lead_identity(None, "anon-big-form")
    known_lead, _ = lead_identity("big@example.org", None)
    view = event(event_id="pv-0", type="page_view", occurred_at=T0, anonymous_id="anon-big-form")
    await produce(broker.bootstrap_servers, source, [(anon_lead.encode(), view)])
    await until(broker, sink, lambda rs: len(rs) >= 1)
    form = event(
        event_id="big-form",
        type="form_submit",
        occurred_at=T0 + timedelta(minutes=1),
        anonymous_id="anon-big-form",
        contact={"email": "big@example.org"},
        properties={"dom": "x" * 1_030_000},
    )
    await produce(broker.bootstrap_servers, source, [(known_lead.encode(), form)])

    dead = await until(broker, settings.topic(TopicName.DLQ), lambda rs: len(rs) >= 1)
    assert DeadLetter.model_validate_json(dead[0].value).reason == "record_too_large"
    merged = await until(broker, sink, lambda rs: any(r.lead_id == known_lead for r in enriched(rs)))
    assert [(r.lead_id, r.event_id) for r in enriched(merged)] == [(anon_lead, "pv-0"), (known_lead, "pv-0")]

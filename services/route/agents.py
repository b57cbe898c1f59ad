"""Route's faust agents and SLA timer: decode, ask the router, publish what it returns."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import TypeVar

import faust
from redis.exceptions import RedisError

from schemas.base import utcnow
from schemas.handoff import Handoff, SlaEventKind
from schemas.privacy import PrivacyRecord, PrivacyRequestKind
from schemas.sales import RepStatusUpdate, SalesRecord
from schemas.stage import StageChange
from schemas.topics import TopicName
from services.privacy import exports, records
from services.privacy.metrics import privacy_metrics
from services.route.metrics import RouteMetrics
from services.route.router import Outcome, Router
from services.route.settings import RouteSettings
from services.route.store import RedisStore
from services.runtime.codec import Decoder
from services.runtime.redis_retry import until_redis_answers
from services.runtime.stream_app import StreamService

log = logging.getLogger(__name__)

T = TypeVar("T")


def install(service: StreamService, router: Router, metrics: RouteMetrics, settings: RouteSettings) -> None:
    stage_topic = service.topic(TopicName.STAGE_CHANGES)
    activity_topic = service.topic(TopicName.SALES_ACTIVITY)
    handoffs = service.topic(TopicName.HANDOFFS)
    sla = service.topic(TopicName.SLA)
    stage_decoder: Decoder[StageChange] = Decoder(StageChange, service.name)
    sales_decoder: Decoder[SalesRecord] = Decoder(SalesRecord, service.name)
    install_privacy(service, router.store, settings)

    async def publish(outcome: Outcome) -> None:
        for record in outcome.records:
            if isinstance(record, Handoff):
                await service.send(handoffs, record.lead_id, record)
                await until_redis_answers(partial(router.published, record), "mark published")
                metrics.handoffs.labels(record.assignee.team, record.sla.tier).inc()
                lag = (record.handed_off_at - record.trigger.occurred_at).total_seconds()
                metrics.speed_to_lead.labels(record.sla.tier).observe(max(0.0, lag))
                continue
            await service.send(sla, record.lead_id, record)
            if record.kind == SlaEventKind.BREACHED:
                metrics.breaches.labels(record.assignee.team, record.tier).inc()
            elif record.kind == SlaEventKind.REASSIGNED:
                metrics.reassignments.labels(record.assignee.team).inc()

    @service.app.agent(stage_topic)
    async def route_stage_changes(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            change = await service.decode(stage_decoder, event)
            if change is not None:
                outcome = await until_redis_answers(partial(router.on_stage_change, change), "stage change")
                await publish(outcome)
            service.observe(stage_topic.get_topic_name(), started)

    @service.app.agent(activity_topic)
    async def track_sales_activity(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            record = await service.decode(sales_decoder, event)
            if isinstance(record, RepStatusUpdate):
                await until_redis_answers(partial(router.on_rep_status, record), "rep status")
            elif record is not None:
                outcome = await until_redis_answers(partial(router.on_activity, record), "activity")
                await publish(outcome)
                if outcome.first_contact_seconds is not None:
                    state = await until_redis_answers(
                        partial(router.store.state, record.lead_id), "first contact"
                    )
                    metrics.observe_first_contact(outcome, state, record)
            service.observe(activity_topic.get_topic_name(), started)

    @service.app.timer(settings.sla_check_interval)  # type: ignore[untyped-decorator]
    async def check_sla_deadlines() -> None:
        """Every worker checks; the claim script hands each due deadline to exactly one of them."""
        try:
            outcome = await router.on_due(utcnow(), settings.sla_claim_seconds)
            await publish(outcome)
            await update_open_leads(router, metrics)
        except (RedisError, OSError) as exc:
            log.warning("SLA check skipped: Redis unavailable (%s)", exc)


async def update_open_leads(router: Router, metrics: RouteMetrics) -> None:
    loads = await router.store.loads()
    for team in router.config.teams:
        metrics.open_leads.labels(team.name).set(sum(loads.get(rep.id, 0) for rep in team.reps))
    await metrics.observe_open_slas(router.store)


def install_privacy(service: StreamService, store: RedisStore, settings: RouteSettings) -> None:
    """Erase and export requests; everything route holds about a lead is in Redis (see store.py)."""
    topic = service.topic(TopicName.PRIVACY)
    decoder: Decoder[PrivacyRecord] = Decoder(PrivacyRecord, service.name)
    metrics = privacy_metrics(service.name, service.metrics.registry)

    async def export(request: PrivacyRecord) -> None:
        try:
            data = await store.export(request.lead_id)
            await exports.put_answer(
                store.redis, settings.topic_suffix, request, service.name, data, now=utcnow()
            )
        except (RedisError, OSError) as exc:  # the requester reports route as missing
            log.warning("export answer not stored, Redis unavailable: %s", type(exc).__name__)

    @service.app.agent(topic, name=f"{service.name}.privacy")
    async def privacy_requests(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            request = await service.decode(decoder, event)
            if request is not None and request.kind is PrivacyRequestKind.ERASE:
                erased = await until_redis_answers(partial(store.erase, request.lead_id), "erase")
                metrics.handled("erase")
                metrics.count_erased(erased)
                completed = records.erasure_completed(request, service.name, erased, utcnow())
                await service.send(topic, request.lead_id, completed)
            elif request is not None and request.kind is PrivacyRequestKind.EXPORT:
                metrics.handled("export")
                await export(request)
            service.observe(topic.get_topic_name(), started)

"""Route's faust agents and SLA timer: decode, ask the router, publish what it returns.

Stage changes are handled in batches (services/runtime/batch.py, RouteBatch): the batch's new
hand-offs are stored, then published together, then marked published once the broker acknowledged
them, so a replay after a crash re-publishes the same hand-off instead of losing it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import faust
from redis.exceptions import RedisError

from schemas.base import utcnow
from schemas.handoff import Handoff, SlaEvent, SlaEventKind
from schemas.privacy import PrivacyRecord, PrivacyRequestKind
from schemas.sales import RepStatusUpdate, SalesActivity, SalesRecord
from schemas.stage import StageChange
from schemas.topics import TopicName
from services.privacy import exports, records
from services.privacy.metrics import PrivacyMetrics, privacy_metrics
from services.route.metrics import RouteMetrics
from services.route.router import Outcome, Router
from services.route.settings import RouteSettings
from services.route.store import RedisStore
from services.runtime.batch import Batch
from services.runtime.codec import Decoder, dead_letter, origin_of
from services.runtime.redis_retry import RedisRefused, until_redis_answers
from services.runtime.stream_app import StreamService

log = logging.getLogger(__name__)

# The SLA events RouteBatch counts once the broker acknowledged them.
_COUNTED = frozenset({SlaEventKind.BREACHED, SlaEventKind.REASSIGNED, SlaEventKind.DUE_SOON})


@dataclass(frozen=True)
class RouteOutputs:
    """Where route's batches send (resolved once) and what they report to."""

    service: StreamService
    router: Router
    metrics: RouteMetrics
    handoffs: faust.TopicT
    sla: faust.TopicT
    privacy: PrivacyMetrics  # counts stage changes dropped as from before their lead's erasure


class RouteBatch(Batch):
    """One batch of stage changes, routed at commit: the reps' statuses read once, every assignment
    in one round trip, the new hand-offs' states stored, then every record sent and acknowledged,
    then the hand-offs marked published and the breaches among the outcomes settled (the order
    `Router` relies on), each step one round trip for the whole batch."""

    def __init__(self, outputs: RouteOutputs) -> None:
        super().__init__(outputs.service.outbox())
        self.outputs = outputs
        self.changes: list[StageChange] = []
        self.sources: list[faust.EventT[bytes]] = []  # each change's record, for a dead letter
        self._outcomes: list[Outcome] = []
        self._handoff_ids: set[str] = set()

    def add(self, outcome: Outcome) -> None:
        """Queue an outcome for the commit; one repeating a hand-off this batch holds already (the
        same stage change twice in one batch, after a replay upstream) is dropped."""
        handoffs = [r.handoff_id for r in outcome.records if isinstance(r, Handoff)]
        if any(hid in self._handoff_ids for hid in handoffs):
            return
        self._handoff_ids.update(handoffs)
        self._outcomes.append(outcome)

    async def commit(self) -> None:
        outputs, metrics = self.outputs, self.outputs.metrics
        if self.changes:
            changes, self.changes = self.changes, []
            sources, self.sources = self.sources, []
            routed = await until_redis_answers(
                partial(outputs.router.on_stage_changes, changes), "route stage changes"
            )
            for outcome, source in zip(routed, sources, strict=True):
                if outcome.unusable is not None:  # left out unassigned: the batch goes on without it
                    await self._dead_letter(source, outcome.unusable)
                elif outcome.erased:
                    outputs.privacy.dropped_stale()
                else:
                    self.add(outcome)
        outcomes, self._outcomes = self._outcomes, []
        self._handoff_ids.clear()
        outcomes = await until_redis_answers(partial(outputs.router.stored, outcomes), "store hand-offs")
        for _ in (outcome for outcome in outcomes if outcome.erased):
            outputs.privacy.dropped_stale()
        handoffs, events = await self._send(outcomes)
        await super().commit()
        self._count(events)
        reminded = [deadline for outcome in outcomes for deadline in outcome.reminded]
        if reminded:  # only now: a reminder whose publish failed is found again by the next tick
            await until_redis_answers(partial(outputs.router.reminded, reminded), "mark reminded")
        breaches = [breach for outcome in outcomes for breach in outcome.breaches]
        if not handoffs and not breaches:
            return
        published = partial(outputs.router.published, handoffs, breaches)
        await until_redis_answers(published, "mark published")
        for handoff in handoffs:
            metrics.handoffs.labels(handoff.assignee.team, handoff.sla.tier).inc()
            lag = (handoff.handed_off_at - handoff.trigger.occurred_at).total_seconds()
            metrics.speed_to_lead.labels(handoff.sla.tier).observe(max(0.0, lag))

    def _count(self, events: list[SlaEvent]) -> None:
        """Counted once acknowledged: a breach or reminder whose publish failed goes out again."""
        metrics = self.outputs.metrics
        for event in events:
            if event.kind == SlaEventKind.BREACHED:
                metrics.breaches.labels(event.assignee.team, event.tier).inc()
            elif event.kind == SlaEventKind.DUE_SOON:
                metrics.reminders.labels(event.assignee.team, event.tier).inc()
            else:
                metrics.reassignments.labels(event.assignee.team).inc()

    async def _dead_letter(self, source: faust.EventT[bytes], reason: str) -> None:
        service = self.outputs.service
        letter = dead_letter(service.name, origin_of(source.message), source.value, "unroutable", reason)
        await service.dead_letter(letter)

    async def _send(self, outcomes: list[Outcome]) -> tuple[list[Handoff], list[SlaEvent]]:
        """Hand every record to the outbox; the hand-offs, and the SLA events counted once acknowledged."""
        outputs = self.outputs
        handoffs: list[Handoff] = []
        events: list[SlaEvent] = []
        for record in (record for outcome in outcomes for record in outcome.records):
            if isinstance(record, Handoff):
                await self.outbox.send(outputs.handoffs, record.lead_id, record)
                handoffs.append(record)
                continue
            await self.outbox.send(outputs.sla, record.lead_id, record)
            if record.kind in _COUNTED:
                events.append(record)
        return handoffs, events


def install(service: StreamService, router: Router, metrics: RouteMetrics, settings: RouteSettings) -> None:
    stage_topic = service.topic(TopicName.STAGE_CHANGES)
    activity_topic = service.topic(TopicName.SALES_ACTIVITY)
    # score publishes stage changes with the contact enrich normalised: trusted (see Decoder)
    stage_decoder: Decoder[StageChange] = Decoder(StageChange, service.name, trusted=True)
    sales_decoder: Decoder[SalesRecord] = Decoder(SalesRecord, service.name)
    privacy = privacy_metrics(service.name, service.metrics.registry)
    install_privacy(service, router.store, settings, privacy)
    outputs = RouteOutputs(
        service, router, metrics, service.topic(TopicName.HANDOFFS), service.topic(TopicName.SLA), privacy
    )

    async def publish(outcome: Outcome) -> None:
        """Outside the stage-change batches (sales activity, the SLA timer): a batch of one outcome."""
        batch = RouteBatch(outputs)
        batch.add(outcome)
        await batch.commit()

    async def on_stage_change(batch: RouteBatch, event: faust.EventT[bytes]) -> None:
        change = await service.decode(stage_decoder, event)
        if change is not None:
            batch.changes.append(change)  # routed together at commit
            batch.sources.append(event)

    @service.app.agent(stage_topic)
    async def route_stage_changes(stream: faust.StreamT[bytes]) -> None:
        await service.run_batches(stream, lambda: RouteBatch(outputs), on_stage_change)

    async def on_sales_record(record: SalesActivity | RepStatusUpdate) -> None:
        if isinstance(record, RepStatusUpdate):
            await until_redis_answers(partial(router.on_rep_status, record), "rep status")
            return
        outcome = await until_redis_answers(partial(router.on_activity, record), "activity")
        await publish(outcome)
        if outcome.first_contact_seconds is not None:
            state = await until_redis_answers(partial(router.store.state, record.lead_id), "first contact")
            metrics.observe_first_contact(outcome, state, record)

    @service.app.agent(activity_topic)
    async def track_sales_activity(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            record = await service.decode(sales_decoder, event)
            if record is not None:
                try:
                    await on_sales_record(record)
                except RedisRefused as exc:  # the same on every retry: held, it stopped the agent for good
                    await service.dead_letter(service.refused_letter(event.message, event.value, exc))
            service.observe(activity_topic.get_topic_name(), started)

    install_sla_timer(service, router, metrics, settings, publish)


def install_sla_timer(
    service: StreamService,
    router: Router,
    metrics: RouteMetrics,
    settings: RouteSettings,
    publish: Callable[[Outcome], Awaitable[None]],
) -> None:
    """Breaches and reminders, every `ROUTE_SLA_CHECK_INTERVAL`."""

    @service.app.timer(settings.sla_check_interval)  # type: ignore[untyped-decorator]
    async def check_sla_deadlines() -> None:
        """Every worker checks; the claim script hands each due deadline to exactly one of them. Then
        each looks for reminders due (`Router.on_reminders`): two workers may publish one reminder
        twice, with the same event id, which the notices mail once.

        Nothing but cancellation may escape: faust ends a timer at its first exception and crashes the
        whole worker with it (mode's `Service._execute_task` calls `crash`). A failed tick is logged
        and counted; the next one runs as usual, and a lead whose breach failed, or whose breach's
        records the broker did not acknowledge, comes due again after its claim's lease, and its
        stored records are published again (`Router.on_due`)."""
        try:
            outcome = await router.on_due(utcnow(), settings.sla_claim_seconds)
            await publish(outcome)
            # After the breaches, so a failing reminder holds up none of them.
            reminders = await router.on_reminders(utcnow())
            if reminders.records:
                await publish(reminders)
            await update_open_leads(router, metrics)
        except (RedisError, OSError) as exc:
            metrics.sla_check_failures.labels("redis").inc()
            log.warning("SLA check skipped: Redis unavailable (%s)", exc)
        except Exception:
            metrics.sla_check_failures.labels("error").inc()
            log.exception("SLA check failed; the next tick checks again")


async def update_open_leads(router: Router, metrics: RouteMetrics) -> None:
    loads = await router.store.loads()
    for team in router.config.teams:
        metrics.open_leads.labels(team.name).set(sum(loads.get(rep.id, 0) for rep in team.reps))
    await metrics.observe_open_slas(router.store)


def install_privacy(
    service: StreamService, store: RedisStore, settings: RouteSettings, metrics: PrivacyMetrics
) -> None:
    """Erase and export requests; everything route holds about a lead is in Redis (see store.py)."""
    topic = service.topic(TopicName.PRIVACY)
    decoder: Decoder[PrivacyRecord] = Decoder(PrivacyRecord, service.name)

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
                erase = partial(store.erase, request.lead_id, utcnow())
                erased = await until_redis_answers(erase, "erase")
                metrics.handled("erase")
                metrics.count_erased(erased)
                completed = records.erasure_completed(request, service.name, erased, utcnow())
                await service.send(topic, request.lead_id, completed)
            elif request is not None and request.kind is PrivacyRequestKind.EXPORT:
                metrics.handled("export")
                await export(request)
            service.observe(topic.get_topic_name(), started)

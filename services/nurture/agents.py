"""nurture's one agent: decode, call the domain, publish commands, store the lead; and the tick timer.

State lives in two changelog-backed tables keyed by lead id: `leads` (the domain's LeadState)
and `due` (when the lead's next step is due, and on which partition). One batched agent reads every
input (stage changes, enriched interactions, sales activity, privacy records and its own ticks), so
each lead has a single writer: with an agent per topic, two could read the same state across an
await and the later write would undo the earlier one. A timer scans `due` for the partitions this
worker owns and publishes a tick keyed by the lead. Commands are acknowledged by the broker before
the state that says "sent" is stored (services/runtime/batch.py): a crash repeats a command (same
id, the mailer drops it), never loses one.

An `erase` request deletes both rows (changelog tombstones) after recording a stop in the delivery
ledger, so commands already queued for the lead are withheld, and remembers the erasure
(services/privacy/guard.py): a stage change or interaction from before it, still in flight, is
dropped rather than bringing the lead back. `export` answers with both rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import faust
from faust.types import TP
from redis.asyncio import Redis
from redis.exceptions import RedisError

from schemas.base import utcnow
from schemas.privacy import PrivacyRecord, PrivacyRequestKind
from schemas.sales import SalesActivity, SalesRecord
from schemas.topics import TopicName
from schemas.views.nurture import EnrichedView, StageChangeView
from services.nurture import domain
from services.nurture.ledger import DeliveryLedger
from services.nurture.metrics import NurtureMetrics
from services.nurture.rules import NurtureRules
from services.nurture.schedule import DueSchedule
from services.nurture.settings import NurtureSettings
from services.privacy import exports, records
from services.privacy.guard import ErasureGuard
from services.privacy.metrics import PrivacyMetrics
from services.runtime.batch import Batch, StagedTable
from services.runtime.codec import Decoder, encode
from services.runtime.redis_client import redis_client
from services.runtime.redis_retry import until_redis_answers
from services.runtime.stream_app import StreamService
from services.runtime.time_index import time_row

log = logging.getLogger(__name__)

T = TypeVar("T")
CONSENT_KINDS = frozenset(
    {
        PrivacyRequestKind.CONSENT_GIVEN,
        PrivacyRequestKind.CONSENT_CONFIRMED,
        PrivacyRequestKind.CONSENT_WITHDRAWN,
    }
)
Step = Callable[..., domain.Outcome]


@dataclass
class Nurture:
    """The nurture worker's parts, built by `create_app` and shared by its agents."""

    service: StreamService
    settings: NurtureSettings
    rules: NurtureRules
    metrics: NurtureMetrics
    ledger: DeliveryLedger
    guard: ErasureGuard  # records from before a lead's erasure are dropped
    privacy_metrics: PrivacyMetrics
    guard_purge_seconds: float  # how often erasures older than the guard's period are forgotten
    leads: Any = None
    due: Any = None
    outbox: Any = None
    ticks: Any = None
    privacy_topic: Any = None
    redis: Redis | None = None  # for export answers
    schedule: DueSchedule = field(init=False)

    def __post_init__(self) -> None:
        self.schedule = DueSchedule(self.settings.retick_seconds)

    async def apply(
        self,
        batch: NurtureBatch,
        event: faust.EventT[Any],
        lead_id: str,
        step: Step,
        *,
        new_lead: bool = True,
    ) -> None:
        """Read-modify-write one lead: hand its commands to the producer and stage its state, stored
        once the batch's commands are acknowledged. `new_lead`: the record may start a lead's row
        (a tick may not: it comes for a row, and one erased since has nothing due)."""
        key = lead_id.encode()
        state: domain.LeadState | None = batch.leads.get(key)
        if state is None:
            if not new_lead:
                return
            state = domain.LeadState(lead_id=lead_id)
        now = utcnow()
        out = step(state, now=now)
        if out.duplicate:
            self.metrics.duplicates.labels("event").inc()
            return
        for command in out.commands:
            await batch.outbox.send(self.outbox, command.lead_id, command)
            self.metrics.queued.labels(command.sequence).inc()
        if out.stopped:
            await until_redis_answers(partial(self.ledger.mark_stopped, lead_id, now), "stop marker")
        batch.leads.set(key, out.state, event)
        next_due, partition = out.state.next_due, event.message.partition
        at = None if next_due is None else next_due.timestamp()
        row = None if at is None else time_row(at, partition)
        if row != batch.due.get(key):  # most records leave it as it was: no changelog write
            batch.due.set(key, row, event)
            self.schedule.set(lead_id, at, partition)
        self._count(out)

    async def erase(self, request: PrivacyRecord, partition: int) -> None:
        """Stop queued mail, then delete the lead's rows and guard them against records still in
        flight; answer with what was erased (counts only)."""
        key, now = request.lead_id.encode(), utcnow()
        erased = {"leads_table": 0, "due_table": 0}
        raw = self.leads.get(key)
        if raw:
            state = domain.LeadState.model_validate_json(raw)
            self._count(domain.on_privacy(state, request, self.rules, now))  # the exits, for metrics
            # Before the rows go: commands already on the outbox must not be delivered.
            await until_redis_answers(
                partial(self.ledger.mark_stopped, request.lead_id, now), "erasure stop marker"
            )
            del self.leads[key]
            erased["leads_table"] = 1
        if key in self.due:
            del self.due[key]
            erased["due_table"] = 1
        self.schedule.set(request.lead_id, None)
        self.guard.erased(request.lead_id, now, partition)
        self.privacy_metrics.handled("erase")
        self.privacy_metrics.count_erased(erased)
        completed = records.erasure_completed(request, self.service.name, erased, now)
        await self.service.send(self.privacy_topic, request.lead_id, completed)

    async def export(self, request: PrivacyRecord) -> None:
        key = request.lead_id.encode()
        raw, due = self.leads.get(key), self.due.get(key)
        self.privacy_metrics.handled("export")
        if self.redis is None:
            return
        try:
            data: dict[str, Any] = {
                "lead": domain.LeadState.model_validate_json(raw).model_dump(mode="json") if raw else None,
                "next_step_due": due.decode().partition("|")[0] if due else None,
                "mail_stopped_at": await self.ledger.stopped_at(request.lead_id),
            }
            await exports.put_answer(
                self.redis, self.settings.topic_suffix, request, self.service.name, data, now=utcnow()
            )
        except (RedisError, OSError) as exc:  # the requester reports nurture as missing
            log.warning("export answer not stored, Redis unavailable: %s", type(exc).__name__)

    def _count(self, out: domain.Outcome) -> None:
        m = self.metrics
        for name in out.enrolled:
            m.enrolments.labels(name).inc()
        for name, reason in out.exits:
            m.exits.labels(name, reason.value).inc()
        for _, suppression in out.suppressed:
            m.suppressed.labels(suppression.value).inc()
        for name in out.skipped:
            m.skipped.labels(name).inc()
        if out.resubscribed:
            m.resubscribed.inc()

    async def announce_due(self) -> int:
        """Publish a tick for each lead due on a partition this worker owns; returns how many."""
        if self.schedule.needs_rebuild:
            await self.schedule.rebuild(self.due)
        actives = self.service.app.assignor.assigned_actives()
        source = self.settings.topic(TopicName.STAGE_CHANGES)
        due = self.schedule.pop_due(utcnow().timestamp(), lambda partition: TP(source, partition) in actives)
        for lead_id in due:
            await self.ticks.send(key=lead_id.encode(), value=b"{}")
        return len(due)


class NurtureBatch(Batch):
    """One batch's commands (sent together) and lead rows (stored after they are acknowledged)."""

    def __init__(self, n: Nurture) -> None:
        self.leads = StagedTable(n.leads, encode=encode, decode=domain.LeadState.model_validate_json)
        self.due = StagedTable(n.due)
        super().__init__(n.service.outbox(), self.leads, self.due)


def install_agents(n: Nurture, channel: faust.TopicT, topics: dict[str, str]) -> None:
    """The agent over `channel` (every input topic; `topics` names them by role) and the timers."""
    service, app, rules = n.service, n.service.app, n.rules
    # Stage changes and enriched interactions are read as views, the fields nurture uses
    # (schemas/views/nurture.py). They come from score and enrich, which read what capture
    # validated at the edge.
    stage_decoder: Decoder[StageChangeView] = Decoder(StageChangeView, service.name, trusted=True)
    enriched_decoder: Decoder[EnrichedView] = Decoder(EnrichedView, service.name, trusted=True)
    sales_decoder: Decoder[SalesActivity | Any] = Decoder(SalesRecord, service.name)
    privacy_decoder: Decoder[PrivacyRecord] = Decoder(PrivacyRecord, service.name)
    n.privacy_topic = service.topic(TopicName.PRIVACY)
    guard = n.guard
    if n.redis is None:
        n.redis = redis_client(n.settings.redis_url, n.settings.redis_timeout)

    async def close_redis(*args: Any, **kwargs: Any) -> None:
        if n.redis is not None:
            await n.redis.aclose()

    app.on_before_shutdown.connect(close_redis)

    async def handle(batch: NurtureBatch, event: faust.EventT[bytes]) -> None:
        topic = event.message.topic
        if topic == topics["stage_changes"]:
            change = await service.decode(stage_decoder, event)
            if change is not None and not guard.drops(change.lead_id, change.occurred_at):
                step = partial(domain.on_stage_change, rules=rules, change=change)
                await n.apply(batch, event, change.lead_id, step)
        elif topic == topics["enriched"]:
            record = await service.decode(enriched_decoder, event)
            if record is not None and not guard.drops(record.lead_id, record.occurred_at):
                await n.apply(
                    batch, event, record.lead_id, partial(domain.on_interaction, rules=rules, event=record)
                )
        elif topic == topics["sales"]:
            activity = await service.decode(sales_decoder, event)
            if isinstance(activity, SalesActivity) and not guard.drops(  # rep status is not about a lead
                activity.lead_id, activity.occurred_at
            ):
                step = partial(domain.on_sales_activity, rules=rules, event=activity)
                await n.apply(batch, event, activity.lead_id, step)
        elif topic == topics["privacy"]:
            request = await service.decode(privacy_decoder, event)
            if request is None:
                return
            if request.kind is PrivacyRequestKind.ERASE:
                await batch.commit()  # the batch's earlier records are stored before the rows go
                await n.erase(request, event.message.partition)
            elif request.kind is PrivacyRequestKind.EXPORT:
                await batch.commit()  # and the answer includes them
                await n.export(request)
            # consent only: completions and other answers are not about nurture
            elif request.kind in CONSENT_KINDS and not guard.drops(request.lead_id, request.occurred_at):
                step = partial(domain.on_privacy, rules=rules, record=request)
                await n.apply(batch, event, request.lead_id, step)
        elif topic == topics["ticks"] and event.key:
            lead_id = bytes(event.key).decode()
            await n.apply(batch, event, lead_id, partial(domain.due, rules=rules), new_lead=False)

    @app.agent(channel, name="nurture")
    async def nurture(stream: faust.StreamT[bytes]) -> None:
        await service.run_batches(stream, lambda: NurtureBatch(n), handle)

    install_timers(n)


def install_timers(n: Nurture) -> None:
    """Due steps announced; erasures older than the guard's period forgotten."""
    app = n.service.app

    @app.timer(n.settings.tick_seconds, name="nurture-scheduler")  # type: ignore[untyped-decorator]
    async def scheduler() -> None:
        await n.announce_due()

    @app.timer(n.guard_purge_seconds, name="nurture-forget-old-erasures")  # type: ignore[untyped-decorator]
    async def forget_old_erasures() -> None:
        n.guard.purge(utcnow())

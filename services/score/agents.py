"""Score's faust agent and timers: decode, call the domain, publish, store. One agent owns the
table, so updates to one lead never interleave."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
from redis.asyncio import Redis
from redis.exceptions import RedisError

from schemas.base import utcnow
from schemas.privacy import PrivacyRecord, PrivacyRequestKind
from schemas.sales import RepStatusUpdate, SalesActivity, SalesRecord
from schemas.views.score import EnrichedView
from services.privacy import exports, records
from services.privacy.guard import ErasureGuard
from services.privacy.metrics import PrivacyMetrics
from services.runtime.batch import Batch, StagedTable
from services.runtime.codec import Decoder
from services.runtime.stream_app import StreamService
from services.score import domain
from services.score.due import DueIndex
from services.score.metrics import ScoreMetrics
from services.score.rules import RulesError, RulesFile
from services.score.state import LeadState

log = logging.getLogger(__name__)


@dataclass
class ScoreWiring:
    service: StreamService
    table: Any  # faust.Table[bytes, bytes]
    rules: RulesFile
    metrics: ScoreMetrics
    index: DueIndex
    enriched: str
    sales: str
    privacy: str
    decay: str
    decay_topic: faust.TopicT
    stage_changes: faust.TopicT
    privacy_topic: faust.TopicT
    privacy_metrics: PrivacyMetrics
    redis: Redis  # export answers only: scoring itself never waits for Redis
    guard: ErasureGuard  # records from before a lead's erasure are dropped


@dataclass(frozen=True)
class Intervals:
    """Seconds between timer runs."""

    decay_check: float
    rules_reload: float
    erasure_purge: float


class ScoreBatch(Batch):
    """One batch's stage changes (sent together) and lead states (stored after they are acknowledged)."""

    def __init__(self, w: ScoreWiring) -> None:
        self.states = StagedTable(w.table, encode=LeadState.dumps, decode=LeadState.loads)
        super().__init__(w.service.outbox(), self.states)

    def load(self, lead_id: str, *, profile: bool = True) -> LeadState | None:
        """The lead's state; `profile=False` for an interaction, which takes the event's profile:
        the stored one is then not parsed (`LeadState.loads_without_profile`)."""
        decode = None if profile else LeadState.loads_without_profile
        state: LeadState | None = self.states.get(lead_id.encode(), decode)
        return state


def register(w: ScoreWiring, channel: faust.TopicT, intervals: Intervals) -> None:
    service = w.service
    interactions: Decoder[EnrichedView] = Decoder(EnrichedView, "score", trusted=True)
    sales: Decoder[SalesActivity | RepStatusUpdate] = Decoder(SalesRecord, "score")
    privacy: Decoder[PrivacyRecord] = Decoder(PrivacyRecord, "score")

    async def handle(batch: ScoreBatch, event: faust.EventT[bytes]) -> None:
        topic = event.message.topic
        rules = w.rules.current
        update: domain.ScoreUpdate | None = None
        if topic == w.enriched:
            record = await service.decode(interactions, event)
            if record is not None and not w.guard.drops(record.lead_id, record.occurred_at):
                state = batch.load(record.lead_id, profile=False)
                update = domain.apply_interaction(state, record, rules)
                _count(w, "interaction", update)
        elif topic == w.sales:
            activity = await service.decode(sales, event)
            if isinstance(activity, SalesActivity) and not w.guard.drops(
                activity.lead_id, activity.occurred_at
            ):
                update = domain.apply_sales_activity(batch.load(activity.lead_id), activity, rules)
                _count(w, "sales", update)
        elif topic == w.privacy:
            request = await service.decode(privacy, event)
            if request is not None:
                await batch.commit()  # erasure and export see the batch's earlier records stored
                await _on_privacy(w, request, event.message.partition)
        elif topic == w.decay and event.key:
            state = batch.load(bytes(event.key).decode())
            if state is not None:
                update = domain.apply_decay_check(
                    state, datetime.fromisoformat(bytes(event.value).decode()), rules
                )
        if update is not None and not update.duplicate:
            await _publish(w, batch, update, event)

    @service.app.agent(channel, name="score")
    async def score(stream: faust.StreamT[bytes]) -> None:
        await service.run_batches(stream, lambda: ScoreBatch(w), handle)

    register_timers(w, intervals)


def register_timers(w: ScoreWiring, intervals: Intervals) -> None:
    """Decay demotions, rules reloads and forgetting old erasures."""

    async def demote_cooled_leads() -> None:
        """Send a check for each lead whose temperature is due to drop; the agent decides."""
        if w.index.needs_rebuild:
            _rebuild(w)
        now = time.time()
        stamp = datetime.fromtimestamp(now, UTC).isoformat().encode()
        for lead_id in w.index.pop_due(now):
            await w.decay_topic.send(key=lead_id.encode(), value=stamp)
        w.metrics.due_leads.set(len(w.index))

    async def forget_old_erasures() -> None:
        w.guard.purge(utcnow())

    async def reload_rules() -> None:
        try:
            if w.rules.reload():
                w.metrics.rules_reloads.labels("ok").inc()
                log.info("reloaded scoring rules from %s", w.rules.path)
        except RulesError as exc:
            w.metrics.rules_reloads.labels("invalid").inc()
            log.error("kept the previous scoring rules: %s", exc)

    w.service.app.timer(intervals.decay_check)(demote_cooled_leads)
    w.service.app.timer(intervals.rules_reload)(reload_rules)
    w.service.app.timer(intervals.erasure_purge)(forget_old_erasures)


def _load(w: ScoreWiring, lead_id: str) -> LeadState | None:
    raw = w.table.get(lead_id.encode())
    return None if raw is None else LeadState.loads(raw)


async def _on_privacy(w: ScoreWiring, request: PrivacyRecord, partition: int) -> None:
    """Erase (and report what was erased) or answer an export; other privacy records are not ours."""
    if request.kind == PrivacyRequestKind.ERASE:
        erased = {"scores_table": _erase(w, request.lead_id)}
        w.guard.erased(request.lead_id, utcnow(), partition)
        w.privacy_metrics.handled("erase")
        w.privacy_metrics.count_erased(erased)
        completed = records.erasure_completed(request, "score", erased, utcnow())
        await w.service.send(w.privacy_topic, request.lead_id, completed)
    elif request.kind == PrivacyRequestKind.EXPORT:
        state = _load(w, request.lead_id)
        data = {"lead_score": None if state is None else state.model_dump(mode="json")}
        w.privacy_metrics.handled("export")
        try:
            suffix = w.service.settings.topic_suffix
            await exports.put_answer(w.redis, suffix, request, "score", data, now=utcnow())
        except (RedisError, OSError) as exc:
            log.warning("export answer not stored, Redis unavailable: %s", type(exc).__name__)


def _erase(w: ScoreWiring, lead_id: str) -> int:
    """Remove the lead's state (the table writes a tombstone to its changelog); 1 if there was one."""
    existed = w.table.pop(lead_id.encode(), None) is not None
    w.index.set(lead_id, None)
    w.metrics.events_scored.labels("privacy", "erased").inc()
    return int(existed)


def _count(w: ScoreWiring, kind: str, update: domain.ScoreUpdate) -> None:
    w.metrics.scored(kind, update.outcome).inc()
    if kind == "interaction" and update.fit is not None:  # evaluated (duplicates are not)
        at = update.state.evaluated_at or 0.0
        w.metrics.total_score.observe(update.fit + domain.engagement_at(update.state, at, w.rules.current))


async def _publish(
    w: ScoreWiring, batch: ScoreBatch, update: domain.ScoreUpdate, event: faust.EventT[bytes]
) -> None:
    """Hand the changes to the producer and stage the state, stored once they are acknowledged."""
    for change in update.changes:
        await batch.outbox.send(w.stage_changes, change.lead_id, change)
        w.metrics.observe_stage_change(change)
    batch.states.set(update.state.lead_id.encode(), update.state, event)
    w.index.set(update.state.lead_id, update.state.next_due)


def _rebuild(w: ScoreWiring) -> None:
    """After recovery or a rebalance: index the leads this worker holds (once, not every tick)."""
    w.index.clear()
    w.index.needs_rebuild = False
    for key, raw in w.table.items():
        if raw is not None:  # only the due time is read: the profiles need not be parsed
            state = LeadState.loads_without_profile(raw)
            w.index.set(bytes(key).decode(), state.next_due)

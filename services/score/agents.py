"""Score's faust agent and timers: decode, call the domain, publish, store. One agent owns the
table, so updates to one lead never interleave."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
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
from services.runtime.partitioner import murmur2
from services.runtime.stream_app import StreamService
from services.score import domain
from services.score.due import DueIndex
from services.score.metrics import ScoreMetrics
from services.score.rules import RulesError, RulesFile
from services.score.state import LeadState

log = logging.getLogger(__name__)

# A rules check's record on the decay topic: the check's time, as a decay check's, and this header.
# A header and not a value of its own, so a worker still on the code before it (a rolling deploy)
# reads the record as a decay check at that time, which its due gate makes harmless.
CHECK_HEADER, RULES_CHECK = "leadpipe-check", b"rules"
RULES_CHECK_CHUNK = 1_000  # checks handed to the producer at once, acknowledged before the next ones


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
    batch: ScoreBatch | None = field(default=None, init=False)  # the agent's: its leads may not be stored yet


@dataclass(frozen=True)
class Intervals:
    """Seconds between timer runs."""

    decay_check: float
    rules_reload: float
    erasure_purge: float


class ScoreBatch(Batch):
    """One batch's stage changes (sent together) and lead states (stored after they are acknowledged),
    then their due times indexed."""

    def __init__(self, w: ScoreWiring) -> None:
        self.states = StagedTable(w.table, encode=LeadState.dumps, decode=LeadState.loads)
        self.index = w.index
        self.due: dict[str, float | None] = {}  # lead id -> its staged state's next_due
        super().__init__(w.service.outbox(), self.states)

    def stage(self, state: LeadState, event: faust.EventT[bytes]) -> None:
        self.states.set(state.lead_id.encode(), state, event)
        self.due[state.lead_id] = state.next_due

    async def commit(self) -> None:
        """Index the due times only once their states are stored: a rebuild of the index (start-up,
        rebalance) reads the table, and one while the batch awaits its acknowledgements would
        otherwise drop the batch's leads until their next event (hot or warm for good)."""
        await super().commit()
        due, self.due = self.due, {}
        for lead_id, at in due.items():
            self.index.set(lead_id, at)

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
            checked_at = datetime.fromisoformat(bytes(event.value).decode())
            if is_rules_check(event.headers):
                update = None if state is None else domain.apply_rules_check(state, checked_at, rules)
                w.metrics.rules_checked(None if update is None else update.changes)
            elif state is not None:
                update = domain.apply_decay_check(state, checked_at, rules)
        if update is not None and not update.duplicate:
            await _publish(w, batch, update, event)

    def begin() -> ScoreBatch:
        w.batch = ScoreBatch(w)
        return w.batch

    @service.app.agent(channel, name="score")
    async def score(stream: faust.StreamT[bytes]) -> None:
        await service.run_batches(stream, begin, handle)

    register_timers(w, intervals)


def register_timers(w: ScoreWiring, intervals: Intervals) -> None:
    """Decay demotions, rules reloads and forgetting old erasures."""

    async def demote_cooled_leads() -> None:
        """Send a check for each lead whose temperature is due to drop; the agent decides."""
        if w.index.needs_rebuild:
            stale = await w.index.rebuild(w.table, w.rules.current.digest)
            if stale:  # evaluated under other rules than this worker's: a restart or a move
                queued = await send_rules_checks(w, stale, utcnow())
                log.info("re-evaluating %d leads last evaluated under other scoring rules", queued)
        now = time.time()
        stamp = datetime.fromtimestamp(now, UTC).isoformat().encode()
        for lead_id in w.index.pop_due(now):
            await w.decay_topic.send(key=lead_id.encode(), value=stamp)
        w.metrics.due_leads.set(len(w.index))

    async def forget_old_erasures() -> None:
        w.guard.purge(utcnow())

    async def reload_rules() -> None:
        """New rules apply to every lead held, not only at each lead's next event (HubSpot, too,
        recalculates every record when its scoring criteria change)."""
        try:
            if not w.rules.reload():
                return
        except RulesError as exc:
            w.metrics.rules_reloads.labels("invalid").inc()
            log.error("kept the previous scoring rules: %s", exc)
            return
        w.metrics.rules_reloads.labels("ok").inc()
        log.info("reloaded scoring rules from %s", w.rules.path)
        queued = await queue_rules_checks(w, utcnow())
        log.info("re-evaluating %d leads under the reloaded rules (checks queued)", queued)

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
    batch.stage(update.state, event)  # indexed when stored (ScoreBatch.commit)


async def queue_rules_checks(w: ScoreWiring, at: datetime) -> int:
    """Send a rules check at `at` for every lead this worker holds to the decay topic, where the agent
    (the table's only writer) evaluates the lead again; how many were sent.

    The leads are the table's and the current batch's (handled, maybe under the old rules, and not
    stored yet). They go in chunks, each acknowledged before the next: a worker holding 1M leads
    neither holds the event loop nor floods the producer. Each chunk goes only to leads on
    partitions the worker still holds: a rebalance may move some while the chunks go."""
    keys = list(w.table.keys())  # a snapshot: 15 ms for 1M leads
    if w.batch is not None:
        staged = (lead_id.encode() for lead_id in w.batch.due)
        keys.extend(key for key in staged if key not in w.table)
    return await send_rules_checks(w, keys, at)


async def send_rules_checks(w: ScoreWiring, keys: list[bytes], at: datetime) -> int:
    """A rules check at `at` for each of `keys` on a partition the worker holds, in chunks (see
    `queue_rules_checks`); how many were sent."""
    value = at.isoformat().encode()
    topic = w.decay_topic.get_topic_name()
    count = w.service.settings.topic_partitions
    queued = 0
    for start in range(0, len(keys), RULES_CHECK_CHUNK):
        held = {tp.partition for tp in w.service.app.assignor.assigned_actives() if tp.topic == topic}
        outbox = w.service.outbox()
        for key in on_partitions(keys[start : start + RULES_CHECK_CHUNK], held, count):
            await outbox.send(w.decay_topic, key, value, RULES_CHECK_HEADERS)
        queued += len(outbox)
        await outbox.flush()
    return queued


RULES_CHECK_HEADERS = {CHECK_HEADER: RULES_CHECK}


def is_rules_check(headers: Mapping[str, bytes] | None) -> bool:
    """Whether a decay-topic record is a rules check (its header); its value is the check's time,
    which makes the check's trigger id, so a replayed check repeats its ids."""
    return headers is not None and bytes(headers.get(CHECK_HEADER) or b"") == RULES_CHECK


def on_partitions(keys: Iterable[bytes], partitions: Set[int], count: int) -> list[bytes]:
    """The keys whose records land on one of `partitions` (of `count`), placed as Kafka's default
    partitioner places them (services/runtime/partitioner.py). Holding every partition, no key is hashed."""
    if len(partitions) >= count:
        return list(keys)
    if not partitions:
        return []
    return [key for key in keys if (murmur2(key) & 0x7FFFFFFF) % count in partitions]

"""Enrich's faust agent: decode, read the lead's state, call the domain, stage the state, publish.

One agent handles interactions, the inbox and privacy requests, in batches (services/runtime/batch.py):
a lead's state has one writer, so nothing changes it while the agent awaits a firmographics lookup,
and a batch's states are stored only once its records are acknowledged by the broker.

Privacy: enrich erases a lead's rows on an `erase` request (and asks the same for the anonymous
leads merged into it), answers `export` requests, and runs the retention sweep: it sees every
interaction, so it keeps each lead's last activity and requests erasure of leads quiet too long.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import faust
from faust.types import TP
from pydantic import Field
from redis.asyncio import Redis
from redis.exceptions import RedisError

from schemas.base import new_event_id, utcnow
from schemas.enriched import (
    AliasRefused,
    AliasRequest,
    EnrichedInteraction,
    FirmographicsResolved,
    ProfileMerge,
    RoutedInteraction,
)
from schemas.interaction import Interaction
from schemas.privacy import PrivacyRecord, PrivacyRequestKind
from schemas.topics import TopicName
from services.enrich import domain
from services.enrich.config import EnrichConfig
from services.enrich.domain import LeadState, Lookup, LookupStatus, Outcome
from services.enrich.firmographics import Provider
from services.enrich.metrics import EnrichMetrics
from services.enrich.profile import contact_domain
from services.enrich.settings import EnrichSettings
from services.privacy import exports, records, retention
from services.privacy.guard import ErasureGuard
from services.privacy.metrics import PrivacyMetrics, privacy_metrics
from services.privacy.policy import PrivacyPolicy, load_policy
from services.runtime.batch import Batch, StagedTable
from services.runtime.changelog_catchup import CaughtUpTable
from services.runtime.codec import Decoder
from services.runtime.redis_client import redis_client
from services.runtime.stream_app import StreamService
from services.runtime.table_rows import rows_in_slices

log = logging.getLogger(__name__)

InboxRecord = Annotated[
    RoutedInteraction | AliasRequest | AliasRefused | ProfileMerge | FirmographicsResolved,
    Field(discriminator="record_type"),
]
INBOX = "enrich.inbox"
SWEEP_SLICE = 1000
"""Erasure requests a retention sweep sends and has acknowledged at once, before its next slice."""
# enrich's tables are keyed by the lead id as text, their values stored as they are (raw both ways)
LEAD_ID_KEYS: faust.Schema[str, bytes] = faust.Schema(
    key_type=str, value_type=bytes, key_serializer="raw", value_serializer="raw"
)


@dataclass
class Enricher:
    """The glue between faust (tables, topics) and the pure domain."""

    service: StreamService
    settings: EnrichSettings
    config: EnrichConfig
    provider: Provider
    metrics: EnrichMetrics
    leads: faust.types.tables.TableT[str, bytes]
    pending: faust.types.tables.TableT[str, bytes]
    sink: faust.TopicT
    inbox: faust.TopicT
    privacy: EnrichPrivacy | None = None
    prefetch_lookups: bool = False  # a remote provider: a batch's lookups go out together (`prefetch`)
    batch: EnrichBatch = field(init=False)

    def __post_init__(self) -> None:
        self.batch = EnrichBatch(self)

    def load(self, lead_id: str) -> LeadState | None:
        state: LeadState | None = self.batch.leads.get(lead_id)
        return state

    def save(self, state: LeadState, event: faust.EventT[bytes]) -> None:
        """Stage the state (and the domain it waits for) until the batch's records are acknowledged."""
        batch = self.batch
        batch.leads.set(state.lead_id, state, event)
        wanted = state.pending_domain.encode() if state.pending_domain else None
        if batch.pending.get(state.lead_id) != wanted:
            batch.pending.set(state.lead_id, wanted, event)

    async def prefetch(self, records: Iterable[Interaction]) -> None:
        """Look up the business domains of these records' contacts side by side, for the batch.

        A remote provider's answers (its Redis cache, the provider itself) were awaited one record at
        a time: a batch waited for the sum of its lookups, and each wait let the producer send the
        batch's records so far on their own. A domain fetched here that its record turns out not to
        need (known already) costs a cache read; one it needs and was not fetched is looked up as before."""
        domains = {d for d in (contact_domain(r) for r in records) if d and d not in self.batch.lookups}
        if domains:
            found = await asyncio.gather(*(self.lookup(d) for d in domains))
            self.batch.lookups.update((lookup.domain, lookup) for lookup in found)

    async def lookup(self, company_domain: str) -> Lookup:
        """The provider's answer within the lookup budget; UNAVAILABLE when it takes longer."""
        try:
            async with asyncio.timeout(self.settings.lookup_budget):
                return await self.provider.lookup(company_domain)
        except TimeoutError:
            self.metrics.provider_outcomes(self.provider.name, "timeout").inc()
            return Lookup(company_domain, LookupStatus.UNAVAILABLE, None, self.provider.name)

    async def publish(self, outcome: Outcome, kind: str) -> None:
        """Alias requests go first: an enriched record too large to send ends the record's effects
        (`RecordTooLarge`, dead-lettered), and a request left unsent after it was lost for good, the
        stored state saying it had been asked."""
        if outcome.duplicate:
            self.metrics.duplicates.inc()
        outbox = self.batch.outbox
        for request in outcome.aliases:
            await outbox.send(self.inbox, request.lead_id, request)
        for record in outcome.records:
            await outbox.send(self.sink, record.lead_id, record)
            self.metrics.published(str(record.enrichment), _kind(record, kind)).inc()
            if record.merged_from:
                self.metrics.merges.inc(len(record.merged_from))

    def stale(self, lead_id: str, occurred_at: datetime) -> bool:
        """Did this record about the lead happen before the lead's erasure (`ErasureGuard`)?"""
        return self.privacy is not None and self.privacy.guard.drops(lead_id, occurred_at)

    async def on_interaction(self, interaction: Interaction, event: faust.EventT[bytes]) -> None:
        if self.stale(interaction.lead_id, interaction.occurred_at):
            return
        state = self.load(interaction.lead_id)
        target = domain.destination(state, interaction)
        if target is not None:
            if state is not None:  # an anonymous id still in use keeps its alias alive
                await self.touch(interaction.lead_id, interaction, event.message.partition)
            routed = RoutedInteraction(
                event_id=interaction.event_id,
                occurred_at=interaction.occurred_at,
                lead_id=target,
                interaction=interaction,
                from_lead_id=interaction.lead_id,
            )
            await self.batch.outbox.send(self.inbox, target, routed)
            return
        await self.enrich(interaction.lead_id, interaction, event, state)

    async def enrich(
        self,
        lead_id: str,
        interaction: Interaction,
        event: faust.EventT[bytes],
        state: LeadState | None = None,
    ) -> None:
        """Callers check `stale` first. `state`: the lead's state when the caller read it already
        (its only writer is this agent)."""
        if state is None:
            state = self.load(lead_id)
        applied = domain.applied_profile(state, lead_id, interaction, self.config)
        wanted = domain.lookup_needed(state, lead_id, interaction, self.config, applied)
        lookup = None
        if wanted:
            lookup = self.batch.lookups.get(wanted) or await self.lookup(wanted)
        outcome = domain.enrich(state, lead_id, interaction, lookup, self.config, applied=applied)
        self.save(outcome.state, event)
        await self.touch(lead_id, interaction, event.message.partition)
        await self.publish(outcome, "live")

    async def touch(self, lead_id: str, interaction: Interaction, partition: int) -> None:
        if self.privacy is not None:
            at = min(interaction.occurred_at.timestamp(), time.time())  # a future date is not activity
            await self.privacy.touch(lead_id, at, partition)

    async def on_inbox(self, record: Any, event: faust.EventT[bytes]) -> None:
        """Every kind is guarded: an alias request, a merge or a late lookup answer in flight when its
        lead was erased would recreate the lead (a merge with the person's name and phone). A stale
        alias request may also take the known lead that sent it along (`identified_late`)."""
        if self.stale(record.lead_id, record.occurred_at):
            if isinstance(record, AliasRequest):
                await self.identified_late(record)
            return
        if isinstance(record, RoutedInteraction):
            await self.enrich(record.lead_id, record.interaction, event)
        elif isinstance(record, AliasRequest):
            answer = domain.alias(self.load(record.lead_id), record)
            self.save(answer.state, event)
            if answer.refusal is not None:
                self.metrics.alias_conflicts.inc()
                await self.batch.outbox.send(self.inbox, answer.refusal.lead_id, answer.refusal)
            if answer.merge is not None:
                await self.batch.outbox.send(self.inbox, answer.merge.lead_id, answer.merge)
        elif isinstance(record, AliasRefused):
            state = domain.alias_refused(self.load(record.lead_id), record)
            if state is not None:
                self.save(state, event)
        elif isinstance(record, ProfileMerge):
            outcome = domain.merge(self.load(record.lead_id), record, self.config)
            if outcome is not None:
                self.save(outcome.state, event)
                await self.publish(outcome, "replay")
        elif isinstance(record, FirmographicsResolved):
            outcome = domain.firmographics_resolved(self.load(record.lead_id), record)
            if outcome is not None:
                self.save(outcome.state, event)
                await self.publish(outcome, "completion")

    async def identified_late(self, request: AliasRequest) -> None:
        """A stale alias request that happened before an erasure of its anonymous lead the person asked
        for: the known lead that sent it is that person (a contact fetched while LinkedIn's DELETED
        was handled), so it is erased too, as `became` would have had the request come first
        (`domain.identity_follows`, `domain.identified_late`).

        Why erase and not refuse to make it: the known lead is made (or found) on its own partition
        from an interaction that names only the anonymous id, before its alias request can reach the
        guard that knows of the erasure. The erase request goes out with the batch's records, so it
        is on the broker before the alias request's offset is committed (a crash repeats it, same id)."""
        privacy = self.privacy
        if privacy is None:
            return
        known = domain.identified_late(request, privacy.guard.erased_by_person_at(request.lead_id))
        if known is None:
            return
        erase = records.identified_erase(request.event_id, known, utcnow())
        await self.batch.outbox.send(privacy.topic, known, erase)
        self.metrics.late_identities.inc()

    async def retry_pending(self) -> None:
        """Look up the domains partial records still wait for; send each answer to the lead's partition."""
        by_domain: dict[str, list[str]] = {}
        for lead_id, raw in list(self.pending.items()):
            by_domain.setdefault(raw.decode(), []).append(lead_id)
        for company_domain, lead_ids in by_domain.items():
            lookup = await self.lookup(company_domain)
            if lookup.status is LookupStatus.UNAVAILABLE:
                return  # still down: the next tick tries again
            for lead_id in lead_ids:
                answer = FirmographicsResolved(
                    event_id=new_event_id(),
                    occurred_at=utcnow(),
                    lead_id=lead_id,
                    domain=company_domain,
                    firmographics=lookup.firmographics,
                )
                await self.service.send(self.inbox, lead_id, answer)

    async def on_privacy(self, request: PrivacyRecord, event: faust.EventT[bytes]) -> None:
        """Erase or export; other privacy records (consent, completions) are not enrich's business.

        Both act on stored state, so the batch's earlier records are committed first."""
        if self.privacy is None or request.kind not in (PrivacyRequestKind.ERASE, PrivacyRequestKind.EXPORT):
            return
        await self.batch.commit()
        if request.kind is PrivacyRequestKind.ERASE:
            await self.erase(request, self.privacy, event.message.partition)
        else:
            await self.export(request, self.privacy)

    async def erase(self, request: PrivacyRecord, privacy: EnrichPrivacy, partition: int) -> None:
        """Delete the lead's rows (each a changelog tombstone) and erase the anonymous leads merged or
        merging into it (`merged_leads` counts both) and, on the person's request, the known lead an
        anonymous one became (`known_lead`). The guard keeps a person's erasure of an anonymous lead
        that was nobody yet as theirs, for the identification of it still in flight (`identified_late`)."""
        lead_id, now = request.lead_id, utcnow()
        state = self.load(lead_id)
        erased = {"leads_table": 0, "pending_table": 0, "activity_table": 0, "merged_leads": 0}
        if state is not None:
            for merged in domain.erased_with(state):  # the same person's anonymous history elsewhere
                await self.service.send(privacy.topic, merged, records.cascaded_erase(request, merged, now))
                erased["merged_leads"] += 1
            known = domain.became(state, request.requested_by)
            if known is not None:
                reason = "an erased anonymous lead was merged into it"
                await self.service.send(
                    privacy.topic, known, records.cascaded_erase(request, known, now, reason)
                )
                erased["known_lead"] = 1
            del self.leads[lead_id]
            erased["leads_table"] = 1
        if lead_id in self.pending:
            del self.pending[lead_id]
            erased["pending_table"] = 1
        erased["activity_table"] = privacy.forget(lead_id)
        by_person = domain.identity_follows(state, lead_id, request.requested_by)
        privacy.guard.erased(lead_id, now, partition, by_person=by_person)
        privacy.metrics.handled("erase")
        privacy.metrics.count_erased(erased)
        completed = records.erasure_completed(request, "enrich", erased, now)
        await self.service.send(privacy.topic, lead_id, completed)

    async def export(self, request: PrivacyRecord, privacy: EnrichPrivacy) -> None:
        state = self.load(request.lead_id)
        pending = self.pending.get(request.lead_id)
        data: dict[str, Any] = {
            "lead": state.model_dump(mode="json") if state else None,
            "pending_lookup_domain": pending.decode() if pending else None,
            "last_activity": privacy.last_activity(request.lead_id),
        }
        privacy.metrics.handled("export")
        try:
            await exports.put_answer(
                privacy.redis, self.settings.topic_suffix, request, "enrich", data, now=utcnow()
            )
        except (RedisError, OSError) as exc:
            log.warning("export answer not stored, Redis unavailable: %s", type(exc).__name__)


@dataclass
class EnrichPrivacy:
    """Retention bookkeeping and what privacy requests need: a last-activity table and its index.

    The table (lead id -> time and partition) is durable; the index answers "who is quiet?" and is
    rebuilt from the table after a rebalance or recovery, never scanned per sweep.
    """

    service: StreamService
    policy: PrivacyPolicy
    metrics: PrivacyMetrics
    activity: CaughtUpTable  # lead id -> retention.encode_activity(...)
    topic: faust.TopicT
    redis: Redis
    source_topic: str
    guard: ErasureGuard
    index: retention.ActivityIndex = field(default_factory=retention.ActivityIndex)

    async def touch(self, lead_id: str, at: float, partition: int) -> None:
        """Written straight to the producer (`CaughtUpTable.write`), as the batches' states are:
        faust's `table[key] = value` cost 3% of enrich's CPU (docs/performance.md, fourteenth pass).
        Not staged with the batch: a last-activity time stored before the batch's effects were
        acknowledged only delays a retention sweep, and a replayed record writes it again."""
        raw = self.activity.get(lead_id)
        stored = retention.decode_activity(raw)[0] if raw else None
        if retention.should_record(stored, at, self.policy.activity_resolution.total_seconds()):
            await self.activity.write(lead_id, retention.encode_activity(at, partition), partition)
            self.index.touch(lead_id, at)

    def forget(self, lead_id: str) -> int:
        self.index.forget(lead_id)
        if lead_id not in self.activity:
            return 0
        del self.activity[lead_id]
        return 1

    def last_activity(self, lead_id: str) -> float | None:
        raw = self.activity.get(lead_id)
        return retention.decode_activity(raw)[0] if raw else None

    async def rebuild(self) -> None:
        """Index the leads this worker holds (after a rebalance or recovery, not every sweep), in
        slices that give the loop turns; a rebalance meanwhile abandons it for the next sweep's."""
        self.index.clear()
        self.index.needs_rebuild = False
        async for lead_id, raw in rows_in_slices(self.activity, abandoned=lambda: self.index.needs_rebuild):
            self.index.touch(lead_id, retention.decode_activity(raw)[0])

    async def sweep(self) -> int:
        """Request erasure of every lead quiet for longer than the retention period; returns how many.

        In slices of `SWEEP_SLICE`, each slice's requests acknowledged together: one slice per sweep
        left an import of 1M leads that all fell quiet on one day past its retention for six weeks
        (1,000 an hour). A rebalance meanwhile ends the sweep; the rebuilt index holds the rest."""
        if self.index.needs_rebuild:
            await self.rebuild()
        cutoff = time.time() - self.policy.inactive_lead_retention.total_seconds()
        sent = 0
        while not self.index.needs_rebuild:
            quiet = self.index.pop_inactive(cutoff, SWEEP_SLICE)
            sent += await self._request_erasures(quiet, cutoff)
            if len(quiet) < SWEEP_SLICE:
                break
        return sent

    async def _request_erasures(self, lead_ids: list[str], cutoff: float) -> int:
        actives = self.service.app.assignor.assigned_actives()
        outbox = self.service.outbox()
        sent = 0
        for lead_id in lead_ids:
            raw = self.activity.get(lead_id)
            if raw is None:
                continue
            at, partition = retention.decode_activity(raw)
            if at > cutoff:
                self.index.touch(lead_id, at)
                continue
            if TP(self.source_topic, partition) not in actives:
                continue  # a standby copy: the partition's owner sends the request
            await outbox.send(self.topic, lead_id, records.retention_erase(lead_id, at, utcnow()))
            sent += 1
        await outbox.flush()
        self.metrics.retention_requests.labels("enrich").inc(sent)
        return sent


async def _decoded(
    service: StreamService, batch: EnrichBatch, event: faust.EventT[bytes], decoder: Decoder[Any]
) -> Any:
    """The record as `prepare` decoded it already (None: dead-lettered), or decoded now."""
    key = id(event)
    if key in batch.decoded:
        return batch.decoded.pop(key)
    return await service.decode(decoder, event)


def _lookups_ahead(
    enricher: Enricher, decoders: dict[str, Decoder[Any]]
) -> Callable[[EnrichBatch, Sequence[faust.EventT[bytes]]], Awaitable[None]]:
    """A batch's `prepare` for a remote provider: decode its interactions (and those routed through
    the inbox) first, then look their domains up together (`Enricher.prefetch`). The local provider
    answers from memory at once and needs none."""

    async def prepare(batch: EnrichBatch, events: Sequence[faust.EventT[bytes]]) -> None:
        found: list[Interaction] = []
        for event in events:
            decoder = decoders.get(event.message.topic)
            if decoder is None:
                continue
            record = batch.decoded[id(event)] = await enricher.service.decode(decoder, event)
            if isinstance(record, Interaction):
                found.append(record)
            elif isinstance(record, RoutedInteraction):
                found.append(record.interaction)
        await enricher.prefetch(found)

    return prepare


class EnrichBatch(Batch):
    """One batch's records to publish and lead states to store once they are acknowledged."""

    def __init__(self, enricher: Enricher) -> None:
        self.leads = StagedTable(
            enricher.leads,
            encode=LeadState.dumps,
            decode=LeadState.model_validate_json,
        )
        self.pending = StagedTable(enricher.pending)
        self.lookups: dict[str, Lookup] = {}  # company domain -> the provider's answer, prefetched
        self.decoded: dict[int, Any] = {}  # id(event) -> its record decoded in `prepare` (None: dead letter)
        super().__init__(enricher.service.outbox(), self.leads, self.pending)


def _kind(record: EnrichedInteraction, default: str) -> str:
    if record.completes and default == "completion":
        return "completion"
    return "replay" if record.replay_of else "live"


def install_privacy(enricher: Enricher) -> EnrichPrivacy:
    """The last-activity table, the policy, a Redis client for export answers, privacy metrics."""
    service, settings = enricher.service, enricher.settings
    app = service.app
    activity = service.table(
        "enrich-activity",
        default=None,
        schema=LEAD_ID_KEYS,
        partitions=settings.topic_partitions,
        help="Last activity time (and partition) by lead id, for the retention sweep.",
    )
    erased = service.table(
        "enrich-erased",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topic_partitions,
        help="When erased leads were erased (and, apart, erased at the person's request), by lead digest: "
        "records from before are dropped.",
    )
    policy = load_policy(settings.privacy_file, settings.topics_file)
    redis = redis_client(settings.redis_url, 2.0)
    metrics = privacy_metrics(service.name, service.metrics.registry)
    privacy = EnrichPrivacy(
        service=service,
        policy=policy,
        metrics=metrics,
        activity=activity,
        topic=service.topic(TopicName.PRIVACY),
        redis=redis,
        source_topic=settings.topic(TopicName.INTERACTIONS),
        guard=ErasureGuard(erased, policy.erasure_guard, metrics.dropped_stale),
    )

    async def close(*args: Any, **kwargs: Any) -> None:
        await redis.aclose()

    service.reindex_when_rows_move(activity, privacy.index.clear)
    app.on_before_shutdown.connect(close)
    return privacy


def register(enricher: Enricher) -> None:
    """Wire the agents, the retry timer and the retention sweep onto the service's faust app."""
    service = enricher.service
    app = service.app
    source = service.topic(TopicName.INTERACTIONS)
    # capture checked every e-mail's syntax at the edge and the inbox is enrich's own: trusted
    interactions: Decoder[Interaction] = Decoder(Interaction, service.name, trusted=True)
    inbox_records: Decoder[Any] = Decoder(InboxRecord, service.name, trusted=True)
    privacy_records: Decoder[PrivacyRecord] = Decoder(PrivacyRecord, service.name)
    privacy = enricher.privacy = install_privacy(enricher)

    names = {"interactions": source.get_topic_name(), "inbox": enricher.inbox.get_topic_name()}
    channel = service.raw_topic(names["interactions"], names["inbox"], privacy.topic.get_topic_name())

    def begin() -> EnrichBatch:
        enricher.batch = EnrichBatch(enricher)
        return enricher.batch

    decoders: dict[str, Decoder[Any]] = {names["interactions"]: interactions, names["inbox"]: inbox_records}
    prepare = _lookups_ahead(enricher, decoders) if enricher.prefetch_lookups else None

    async def handle(batch: EnrichBatch, event: faust.EventT[bytes]) -> None:
        topic = event.message.topic
        if topic == names["interactions"]:
            interaction = await _decoded(service, batch, event, interactions)
            if interaction is not None:
                await enricher.on_interaction(interaction, event)
        elif topic == names["inbox"]:
            record = await _decoded(service, batch, event, inbox_records)
            if record is not None:
                await enricher.on_inbox(record, event)
        else:
            request = await service.decode(privacy_records, event)
            if request is not None:
                await enricher.on_privacy(request, event)

    @app.agent(channel, name=f"{service.name}.records")
    async def enrich_records(stream: faust.StreamT[bytes]) -> None:
        await service.run_batches(stream, begin, handle, prepare)

    @app.timer(enricher.settings.retry_interval_seconds, name=f"{service.name}.retry_pending")  # type: ignore[untyped-decorator]
    async def retry_pending() -> None:
        await enricher.retry_pending()

    sweep_seconds = privacy.policy.retention_sweep_interval.total_seconds()

    @app.timer(sweep_seconds, name=f"{service.name}.retention_sweep")  # type: ignore[untyped-decorator]
    async def retention_sweep() -> None:
        sent = await privacy.sweep()
        if sent:
            log.info("retention sweep: erasure requested for %d leads quiet past the retention period", sent)
        privacy.guard.purge(utcnow())

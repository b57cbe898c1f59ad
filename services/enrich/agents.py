"""Enrich's faust agents: decode, read the lead's state, call the domain, save, publish.

State is read again after every await (the firmographics lookup), so an agent never writes back a
state another agent changed meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any

import faust
from pydantic import Field

from schemas.base import new_event_id, utcnow
from schemas.enriched import (
    AliasRequest,
    EnrichedInteraction,
    FirmographicsResolved,
    ProfileMerge,
    RoutedInteraction,
)
from schemas.interaction import Interaction
from schemas.topics import TopicName
from services.enrich import domain
from services.enrich.config import EnrichConfig
from services.enrich.domain import LeadState, Lookup, LookupStatus, Outcome
from services.enrich.firmographics import Provider
from services.enrich.metrics import EnrichMetrics
from services.enrich.settings import EnrichSettings
from services.runtime.codec import Decoder
from services.runtime.stream_app import StreamService

InboxRecord = Annotated[
    RoutedInteraction | AliasRequest | ProfileMerge | FirmographicsResolved,
    Field(discriminator="record_type"),
]
INBOX = "enrich.inbox"


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

    def load(self, lead_id: str) -> LeadState | None:
        raw = self.leads.get(lead_id)
        return LeadState.model_validate_json(raw) if raw else None

    def save(self, state: LeadState) -> None:
        self.leads[state.lead_id] = state.model_dump_json().encode()
        if state.pending_domain:
            if self.pending.get(state.lead_id) != state.pending_domain.encode():
                self.pending[state.lead_id] = state.pending_domain.encode()
        elif state.lead_id in self.pending:
            del self.pending[state.lead_id]

    async def lookup(self, company_domain: str) -> Lookup:
        """The provider's answer within the lookup budget; UNAVAILABLE when it takes longer."""
        try:
            async with asyncio.timeout(self.settings.lookup_budget):
                return await self.provider.lookup(company_domain)
        except TimeoutError:
            self.metrics.provider_requests.labels(self.provider.name, "timeout").inc()
            return Lookup(company_domain, LookupStatus.UNAVAILABLE, None, self.provider.name)

    async def publish(self, outcome: Outcome, kind: str) -> None:
        if outcome.duplicate:
            self.metrics.duplicates.inc()
        for record in outcome.records:
            await self.service.send(self.sink, record.lead_id, record)
            self.metrics.enriched.labels(str(record.enrichment), _kind(record, kind)).inc()
            if record.merged_from:
                self.metrics.merges.inc(len(record.merged_from))
        for request in outcome.aliases:
            await self.service.send(self.inbox, request.lead_id, request)

    async def on_interaction(self, interaction: Interaction) -> None:
        target = domain.destination(self.load(interaction.lead_id), interaction)
        if target is not None:
            routed = RoutedInteraction(
                event_id=interaction.event_id,
                occurred_at=interaction.occurred_at,
                lead_id=target,
                interaction=interaction,
                from_lead_id=interaction.lead_id,
            )
            await self.service.send(self.inbox, target, routed)
            return
        await self.enrich(interaction.lead_id, interaction)

    async def enrich(self, lead_id: str, interaction: Interaction) -> None:
        wanted = domain.lookup_needed(self.load(lead_id), lead_id, interaction, self.config)
        lookup = await self.lookup(wanted) if wanted else None
        outcome = domain.enrich(self.load(lead_id), lead_id, interaction, lookup, self.config)
        self.save(outcome.state)
        await self.publish(outcome, "live")

    async def on_inbox(self, record: Any) -> None:
        if isinstance(record, RoutedInteraction):
            await self.enrich(record.lead_id, record.interaction)
        elif isinstance(record, AliasRequest):
            answer = domain.alias(self.load(record.lead_id), record)
            self.save(answer.state)
            if answer.conflict:
                self.metrics.alias_conflicts.inc()
            if answer.merge is not None:
                await self.service.send(self.inbox, answer.merge.lead_id, answer.merge)
        elif isinstance(record, ProfileMerge):
            outcome = domain.merge(self.load(record.lead_id), record, self.config)
            self.save(outcome.state)
            await self.publish(outcome, "replay")
        elif isinstance(record, FirmographicsResolved):
            outcome = domain.firmographics_resolved(self.load(record.lead_id), record)
            self.save(outcome.state)
            await self.publish(outcome, "completion")

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


def _kind(record: EnrichedInteraction, default: str) -> str:
    if record.completes and default == "completion":
        return "completion"
    return "replay" if record.replay_of else "live"


def register(enricher: Enricher) -> None:
    """Wire the agents and the retry timer onto the service's faust app."""
    service = enricher.service
    app = service.app
    source = service.topic(TopicName.INTERACTIONS)
    interactions: Decoder[Interaction] = Decoder(Interaction, service.name)
    inbox_records: Decoder[Any] = Decoder(InboxRecord, service.name)

    @app.agent(source, name=f"{service.name}.interactions")
    async def enrich_interactions(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            interaction = await service.decode(interactions, event)
            if interaction is not None:
                await enricher.on_interaction(interaction)
            service.observe(event.message.topic, started)

    @app.agent(enricher.inbox, name=f"{service.name}.inbox")
    async def enrich_inbox(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            record = await service.decode(inbox_records, event)
            if record is not None:
                await enricher.on_inbox(record)
            service.observe(event.message.topic, started)

    @app.timer(enricher.settings.retry_interval_seconds, name=f"{service.name}.retry_pending")  # type: ignore[untyped-decorator]
    async def retry_pending() -> None:
        await enricher.retry_pending()

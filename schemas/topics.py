"""The topic catalogue: names, keys, messages, publishers and subscribers of every topic."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel

from schemas.dead_letter import DeadLetter
from schemas.enriched import EnrichedInteraction
from schemas.handoff import Handoff, SlaEvent
from schemas.interaction import Interaction
from schemas.nurture import NurtureCommand
from schemas.privacy import PrivacyRecord
from schemas.sales import RepStatusUpdate, SalesActivity
from schemas.stage import StageChange


class TopicName(StrEnum):
    INTERACTIONS = "leads.interactions"
    ENRICHED = "leads.enriched"
    STAGE_CHANGES = "leads.stage-changes"
    HANDOFFS = "leads.handoffs"
    SLA = "leads.sla"
    SALES_ACTIVITY = "sales.activity"
    NURTURE_OUTBOX = "nurture.outbox"
    DLQ = "leads.dlq"
    PRIVACY = "privacy.requests"


ALL_SERVICES = ("capture", "enrich", "score", "route", "nurture")


@dataclass(frozen=True)
class TopicSpec:
    name: TopicName
    description: str
    key: str
    messages: tuple[type[BaseModel], ...]
    publishers: tuple[str, ...]
    subscribers: tuple[str, ...]


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        TopicName.INTERACTIONS,
        "Validated interactions from websites, forms, ad platforms and imports.",
        "lead_id",
        (Interaction,),
        ("capture",),
        ("enrich",),
    ),
    TopicSpec(
        TopicName.ENRICHED,
        "Interactions about a resolved lead, with the lead's current profile.",
        "lead_id",
        (EnrichedInteraction,),
        ("enrich",),
        ("score", "nurture"),
    ),
    TopicSpec(
        TopicName.STAGE_CHANGES,
        "Temperature and lifecycle moves, each with scores and reasons.",
        "lead_id",
        (StageChange,),
        ("score",),
        ("route", "nurture", "sales tools"),
    ),
    TopicSpec(
        TopicName.HANDOFFS,
        "Leads handed to a sales rep or team, with the contact SLA.",
        "lead_id",
        (Handoff,),
        ("route",),
        ("sales tools", "CRM"),
    ),
    TopicSpec(
        TopicName.SLA,
        "Contact-SLA lifecycle: started, met, breached, reassigned, escalated.",
        "lead_id",
        (SlaEvent,),
        ("route",),
        ("sales tools",),
    ),
    TopicSpec(
        TopicName.SALES_ACTIVITY,
        "What sales did with a lead (keyed by lead id) and rep status updates (keyed by rep id).",
        "lead_id (rep_id for rep_status records)",
        (SalesActivity, RepStatusUpdate),
        ("sales tools",),
        ("route", "score", "nurture"),
    ),
    TopicSpec(
        TopicName.NURTURE_OUTBOX,
        "Messages due to be delivered to a lead, with a deterministic id.",
        "lead_id",
        (NurtureCommand,),
        ("nurture",),
        ("mailer",),
    ),
    TopicSpec(
        TopicName.DLQ,
        "Records a service could not read, with the reason and where they came from.",
        "original record key",
        (DeadLetter,),
        ALL_SERVICES,
        ("operators",),
    ),
    TopicSpec(
        TopicName.PRIVACY,
        "Erasure requests, consent changes (with proof) and erasure completions.",
        "lead_id",
        (PrivacyRecord,),
        ("capture", "operators", *ALL_SERVICES[1:]),
        ALL_SERVICES,
    ),
)


def spec_for(name: str) -> TopicSpec:
    for spec in TOPICS:
        if spec.name == name:
            return spec
    raise KeyError(name)

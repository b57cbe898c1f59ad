"""leadpipe's event contracts: the one place every topic's records are defined."""

from schemas.base import LeadEvent, new_event_id, utcnow
from schemas.dead_letter import DeadLetter, RecordOrigin
from schemas.enriched import EnrichedInteraction, EnrichmentStatus
from schemas.handoff import Assignee, Handoff, SlaEvent, SlaEventKind, SlaTerms
from schemas.interaction import (
    Consent,
    Contact,
    IdentityKind,
    Interaction,
    InteractionIn,
    InteractionType,
    Source,
)
from schemas.nurture import NurtureCommand
from schemas.privacy import PrivacyRecord, PrivacyRequestKind
from schemas.profile import EmailKind, Firmographics, LeadProfile
from schemas.sales import RepStatusUpdate, SalesActivity, SalesActivityKind, SalesRecord
from schemas.stage import (
    Bant,
    LifecycleStage,
    Reason,
    Scores,
    StageChange,
    StageKind,
    Temperature,
    Trigger,
)
from schemas.topics import TOPICS, TopicName, TopicSpec

__all__ = [
    "TOPICS",
    "Assignee",
    "Bant",
    "Consent",
    "Contact",
    "DeadLetter",
    "EmailKind",
    "EnrichedInteraction",
    "EnrichmentStatus",
    "Firmographics",
    "Handoff",
    "IdentityKind",
    "Interaction",
    "InteractionIn",
    "InteractionType",
    "LeadEvent",
    "LeadProfile",
    "LifecycleStage",
    "NurtureCommand",
    "PrivacyRecord",
    "PrivacyRequestKind",
    "Reason",
    "RecordOrigin",
    "RepStatusUpdate",
    "SalesActivity",
    "SalesActivityKind",
    "SalesRecord",
    "Scores",
    "SlaEvent",
    "SlaEventKind",
    "SlaTerms",
    "Source",
    "StageChange",
    "StageKind",
    "Temperature",
    "TopicName",
    "TopicSpec",
    "Trigger",
    "new_event_id",
    "utcnow",
]

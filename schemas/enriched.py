"""Enriched interactions on `leads.enriched`: the interaction plus the lead's current profile."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from schemas.base import LeadEvent
from schemas.interaction import Interaction
from schemas.profile import LeadProfile


class EnrichmentStatus(StrEnum):
    COMPLETE = "complete"
    PARTIAL = "partial"


class EnrichedInteraction(LeadEvent):
    """Keyed by the resolved lead id (after identity resolution)."""

    interaction: Interaction
    profile: LeadProfile
    enrichment: EnrichmentStatus = EnrichmentStatus.COMPLETE
    merged_from: list[str] = Field(
        default_factory=list,
        description="Lead ids merged into this lead by this event (anonymous history now counts here).",
    )
    record_type: Literal["enriched_interaction"] = "enriched_interaction"

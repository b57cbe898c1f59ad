"""Enriched interactions on `leads.enriched`: the interaction plus the lead's current profile."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from schemas.base import LeadEvent
from schemas.interaction import Interaction
from schemas.profile import Firmographics, LeadProfile


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
    replay_of: str | None = Field(
        None,
        description=(
            "Set when an earlier anonymous interaction is republished for the known lead after a merge: "
            "the anonymous lead id it was first published under. Count it for this lead; it is not new."
        ),
        examples=["a-6f1d0c9b2a7e44f1b6c8d0e2"],
    )
    completes: list[str] = Field(
        default_factory=list,
        description=(
            "Set when a late firmographics lookup completes earlier partial records: their event ids. "
            "The interaction was already counted; take the profile from here."
        ),
    )
    record_type: Literal["enriched_interaction"] = "enriched_interaction"


# Enrich's internal records, on its own `enrich-inbox` topic keyed by the lead id they are about.
# They move identity and lookup results to the partition that owns the lead's state.


class RoutedInteraction(LeadEvent):
    """An interaction forwarded to the lead that now owns it (after an alias or e-mail re-keying)."""

    interaction: Interaction
    from_lead_id: str
    record_type: Literal["routed_interaction"] = "routed_interaction"


class AliasRequest(LeadEvent):
    """Keyed by the anonymous lead id: "this anonymous lead is the known lead `target_lead_id`"."""

    target_lead_id: str
    record_type: Literal["alias_request"] = "alias_request"


class AliasRefused(LeadEvent):
    """Keyed by the known lead: the anonymous lead `from_lead_id` it asked to merge had become another
    known lead first (a shared browser), so no merge will come."""

    from_lead_id: str
    record_type: Literal["alias_refused"] = "alias_refused"


class ProfileMerge(LeadEvent):
    """Keyed by the known lead: the anonymous lead's profile and history to merge in."""

    from_lead_id: str
    profile: LeadProfile
    history: list[Interaction] = Field(default_factory=list)
    record_type: Literal["profile_merge"] = "profile_merge"


class FirmographicsResolved(LeadEvent):
    """Keyed by the lead: a late lookup answered for `domain` (None: no company known)."""

    domain: str
    firmographics: Firmographics | None = None
    record_type: Literal["firmographics_resolved"] = "firmographics_resolved"

"""What nurture reads of the records it consumes: views of two contracts with only those fields.

Why: nurture reads every enriched interaction and every stage change (about 2.4 KB each) and uses a
small part of each: the profile fields it personalises and segments with, the interaction's type and
properties, the stages. Decoding a whole contract cost 23-26 µs per record and was a quarter of
nurture's samples at 1,000 events/s; the views decode in 8-10 µs (docs/performance.md, nineteenth
pass). `tests/unit/test_nurture_views.py` holds them to their contracts. A record is dead-lettered
only when the fields nurture reads are unreadable: a reader that tolerates what it does not read, as
the contracts' `extra="ignore"` already makes every consumer.
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field, JsonValue

from schemas.base import Contract
from schemas.enriched import EnrichedInteraction
from schemas.interaction import Interaction, InteractionType, Source
from schemas.profile import EmailKind, Firmographics, LeadProfile
from schemas.stage import LifecycleStage, StageChange, Temperature


class FirmographicsView(Contract):
    company_name: str | None = None
    employee_range: str | None = None
    industry: str | None = None
    country: str | None = None


class ProfileView(Contract):
    lead_id: str
    email: str | None = None
    email_kind: EmailKind = EmailKind.UNKNOWN
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    seniority: str | None = None
    department: str | None = None
    country: str | None = None
    timezone: str | None = None
    firmographics: FirmographicsView = Field(default_factory=FirmographicsView)


class InteractionView(Contract):
    type: InteractionType
    properties: dict[str, JsonValue] = Field(default_factory=dict)


class EnrichedView(Contract):
    """An enriched interaction on `leads.enriched`, as nurture reads it."""

    event_id: str = Field(min_length=1, max_length=128)
    occurred_at: AwareDatetime  # records from before the lead's erasure are dropped
    lead_id: str = Field(min_length=1, max_length=128)
    interaction: InteractionView
    profile: ProfileView


class StageChangeView(Contract):
    """A stage change on `leads.stage-changes`, as nurture reads it."""

    event_id: str = Field(min_length=1, max_length=128)
    occurred_at: AwareDatetime  # records from before the lead's erasure are dropped
    lead_id: str = Field(min_length=1, max_length=128)
    temperature: Temperature
    lifecycle: LifecycleStage
    sales_ready: bool = False
    profile: ProfileView
    source: Source = Field(default_factory=Source)


# Each view and the contract it reads, for the test that holds them together.
CONTRACTS: dict[type[Contract], type[Contract]] = {
    FirmographicsView: Firmographics,
    ProfileView: LeadProfile,
    InteractionView: Interaction,
    EnrichedView: EnrichedInteraction,
    StageChangeView: StageChange,
}

"""What score reads of an enriched interaction: a view of the contract with only those fields.

Why: score keeps the whole profile (it stores it and passes it on in stage changes), but of the
interaction it reads the type, source and properties alone; the contact block, consent, identity
and timestamps it skips are a quarter of the record and run seven Python validators per record.
Decoding through the view, in `domain.score` (three alternating pairs): 37-57 -> 26-35 µs per
record, from 20% of score's per-record work to 16% (docs/performance.md, nineteenth pass).
`tests/unit/test_score_views.py` holds them to their contracts.
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field, JsonValue

from schemas.base import Contract
from schemas.enriched import EnrichedInteraction
from schemas.interaction import Interaction, InteractionType, Source
from schemas.profile import LeadProfile


class InteractionView(Contract):
    event_id: str = Field(min_length=1, max_length=128)  # a completion names it in `completes`
    type: InteractionType
    source: Source = Field(default_factory=Source)
    properties: dict[str, JsonValue] = Field(default_factory=dict)


class EnrichedView(Contract):
    """An enriched interaction on `leads.enriched`, as score reads it."""

    event_id: str = Field(min_length=1, max_length=128)
    occurred_at: AwareDatetime
    lead_id: str = Field(min_length=1, max_length=128)
    interaction: InteractionView
    profile: LeadProfile
    completes: list[str] = Field(default_factory=list)


# Each view and the contract it reads, for the test that holds them together.
CONTRACTS: dict[type[Contract], type[Contract]] = {
    InteractionView: Interaction,
    EnrichedView: EnrichedInteraction,
}

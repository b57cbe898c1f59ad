"""Builders for score unit tests: enriched interactions, sales activity and rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import JsonValue

from schemas.enriched import EnrichedInteraction
from schemas.interaction import IdentityKind, Interaction, InteractionType
from schemas.profile import EmailKind, Firmographics, LeadProfile
from schemas.sales import SalesActivity, SalesActivityKind
from schemas.views import read_as
from schemas.views.score import EnrichedView
from services.score.rules import DEFAULT_RULES_FILE, ScoringRules, load_rules

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LEAD = "e-lead-1"


def rules(**overrides: Any) -> ScoringRules:
    base = load_rules(DEFAULT_RULES_FILE)
    return base.model_copy(update=overrides)


def vp_profile(lead_id: str = LEAD, **changes: Any) -> LeadProfile:
    """A VP of marketing at a 500-person German software company, business e-mail."""
    fields: dict[str, Any] = {
        "lead_id": lead_id,
        "email": "vp@example.com",
        "email_kind": EmailKind.BUSINESS,
        "seniority": "vp",
        "department": "marketing",
        "country": "DE",
        "firmographics": Firmographics(employees=500, industry="Software", country="DE"),
    }
    fields.update(changes)
    return LeadProfile(**fields)


def enriched(
    type_: InteractionType | str,
    at: datetime | float = T0,
    *,
    event_id: str | None = None,
    properties: dict[str, JsonValue] | None = None,
    profile: LeadProfile | None = None,
    lead_id: str = LEAD,
) -> EnrichedView:
    moment = at if isinstance(at, datetime) else T0 + timedelta(seconds=at)
    kind = InteractionType(type_)
    eid = event_id or f"{kind.value}-{moment.timestamp()}"
    interaction = Interaction(
        event_id=eid,
        occurred_at=moment,
        lead_id=lead_id,
        type=kind,
        identity=IdentityKind.EMAIL,
        properties=properties or {},
        received_at=moment,
    )
    record = EnrichedInteraction(
        event_id=eid,
        occurred_at=moment,
        lead_id=lead_id,
        interaction=interaction,
        profile=profile or LeadProfile(lead_id=lead_id),
    )
    return read_as(EnrichedView, record)  # as score's agent reads it


def sales(
    activity: SalesActivityKind | str,
    at: datetime | float = T0,
    *,
    event_id: str | None = None,
    properties: dict[str, JsonValue] | None = None,
    lead_id: str = LEAD,
) -> SalesActivity:
    moment = at if isinstance(at, datetime) else T0 + timedelta(seconds=at)
    kind = SalesActivityKind(activity)
    return SalesActivity(
        event_id=event_id or f"sales-{kind.value}-{moment.timestamp()}",
        occurred_at=moment,
        lead_id=lead_id,
        activity=kind,
        properties=properties or {},
    )

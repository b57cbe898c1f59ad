"""What sales tools report on `sales.activity`: lead activity and rep status."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, JsonValue

from schemas.base import Contract, LeadEvent

MAX_CAPACITY = 100_000
"""Most open leads a rep may hold: a capacity of 400 digits failed route's status script (Redis's
cjson reads it as infinity) for ever."""


class SalesActivityKind(StrEnum):
    ACCEPTED = "accepted"
    CONTACTED = "contacted"
    MEETING_BOOKED = "meeting_booked"
    OPPORTUNITY_CREATED = "opportunity_created"
    REJECTED = "rejected"
    WON = "won"
    LOST = "lost"
    BANT_UPDATED = "bant_updated"


class SalesActivity(LeadEvent):
    """Something a rep did with a lead; keyed by lead id."""

    record_type: Literal["sales_activity"] = "sales_activity"
    activity: SalesActivityKind
    rep_id: str | None = None
    reason: str | None = Field(None, description="Why, for rejected or lost.")
    properties: dict[str, JsonValue] = Field(default_factory=dict)


class RepStatusUpdate(Contract):
    """A rep's availability or capacity changed; keyed by rep id, the one non-lead record here."""

    record_type: Literal["rep_status"] = "rep_status"
    schema_version: int = Field(1, ge=1)
    event_id: str
    occurred_at: AwareDatetime
    rep_id: str
    available: bool | None = None
    capacity: int | None = Field(None, ge=0, le=MAX_CAPACITY)
    out_of_office_until: AwareDatetime | None = None


SalesRecord = Annotated[SalesActivity | RepStatusUpdate, Field(discriminator="record_type")]

"""Request and answer bodies of route's rep API; handlers and /openapi.json both use these."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.sales import MAX_CAPACITY
from services.route.domain import Unavailable


class RepStatusIn(BaseModel):
    """Body of PUT /reps/{rep_id}: omitted fields keep their value, null resets one (the configured
    availability or capacity, no absence), as in a JSON merge patch (RFC 7396)."""

    model_config = ConfigDict(extra="forbid")

    available: bool | None = Field(None, description="false takes the rep out of rotation.")
    capacity: int | None = Field(
        None, ge=0, le=MAX_CAPACITY, description="Most open leads at once (overrides config)."
    )
    out_of_office_until: AwareDatetime | None = Field(
        None, description="No new leads before this time (with a UTC offset); null ends an absence."
    )


class RepOut(BaseModel):
    """A rep as configured, with run-time status and load."""

    rep_id: str
    team: str
    weight: int
    capacity: int
    open_leads: int
    available_now: bool
    unavailable_because: Unavailable | None
    out_of_office_until: datetime | None


class RepList(BaseModel):
    reps: list[RepOut]

"""Commands to the delivery adapter on `nurture.outbox`."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field, JsonValue

from schemas.base import LeadEvent


class NurtureCommand(LeadEvent):
    """event_id is deterministic (lead, sequence, step, enrolment), so a repeat is recognisable."""

    sequence: str = Field(examples=["welcome"])
    step: int = Field(ge=0)
    template_id: str = Field(examples=["welcome-1"])
    channel: str = Field("email", examples=["email"])
    recipient: str = Field(description="Address to deliver to.")
    personalisation: dict[str, JsonValue] = Field(default_factory=dict)
    consent_proof_ref: str | None = Field(None, description="Id of the consent record that allows sending.")
    purpose: Literal["marketing", "consent_request"] = Field(
        "marketing",
        description="consent_request: the double opt-in mail, sent before consent is confirmed, with "
        "the confirmation link and no tracking.",
    )
    send_after: AwareDatetime
    record_type: Literal["nurture_command"] = "nurture_command"
